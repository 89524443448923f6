// The CUnit runner behind `make test`. Run from the repository root.
#include <CUnit/Basic.h>

#include "tests.h"

int main(int argc, char **argv) {
    if (CU_initialize_registry() != CUE_SUCCESS) return 1;
    register_dtype_tests();
    register_safetensors_tests();
    register_model_config_tests();
    register_model_io_tests();
    register_gemm_tests();
    register_golden_tests();
    register_exp_tests();
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
    register_reward_tests();
    register_stage_tests();
    register_shard_tests();
    register_tp_tests();
    register_pipeline_tests();
    register_tb_tests();
    register_report_tests();
    register_rescore_tests();
    return test_run_suites(argc, argv);
}
