// The CUnit runner behind `make test`. Run from the repository root.
#include <stdio.h>
#include <stdlib.h>

#include <CUnit/Basic.h>

#include "tests.h"

int main(int argc, char **argv) {
    if (CU_initialize_registry() != CUE_SUCCESS) return 1;
    register_dtype_tests();
    register_safetensors_tests();
    register_model_config_tests();
    register_model_io_tests();
    register_kernel_grad_tests();
    register_model_grad_tests();
    register_optimizer_tests();
    register_parity_tests();
    register_cli_tests();
    register_utf8_tests();
    register_tokenizer_tests();
    register_tokenizer_real_tests();
    register_chat_template_tests();
    register_data_tests();
    register_task_tests();
    register_config_tests();
    register_sampler_tests();
    register_gem_tests();
    register_stage_tests();
    register_shard_tests();
    register_tp_tests();
    register_pipeline_tests();
    CU_basic_set_mode(CU_BRM_VERBOSE);
    if (argc > 1) {
        // one suite by name: build/test_gemc SUITE
        CU_pSuite s = CU_get_suite(argv[1]);
        if (!s) {
            fprintf(stderr, "no suite named '%s'\n", argv[1]);
            return 1;
        }
        CU_basic_run_suite(s);
    } else {
        CU_basic_run_tests();
    }
    unsigned failed = CU_get_number_of_failures() + CU_get_number_of_tests_failed();
    unsigned run = CU_get_number_of_tests_run();
    CU_cleanup_registry();
    if (run == 0) {
        fprintf(stderr, "no test ran\n");
        return 1;
    }
    return failed ? 1 : 0;
}
