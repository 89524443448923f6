#!/bin/sh
# Regenerates tests/fixtures/tb/*.pb: tensorflow.Event messages serialized by protoc, the
# reference encoder that tests/test_tb.c compares src/run/tb_events.c's bytes against. The tests only
# read the committed .pb files; protoc is needed here alone.
set -eu
cd "$(dirname "$0")/../tests/fixtures/tb"
command -v protoc >/dev/null || { echo "tb_fixture.sh: protoc not found" >&2; exit 1; }

encode() { # NAME TEXT
    printf '%s\n' "$2" | protoc --proto_path=. --encode=tensorflow.Event event.proto >"$1.pb"
}

encode version 'wall_time: 1700000000.25 file_version: "brain.Event:2"'
encode scalars3 'wall_time: 1700000123.5 step: 42 summary {
  value { tag: "train/loss" simple_value: -1.75 }
  value { tag: "train/lr" simple_value: 3e-05 }
  value { tag: "eval/\303\251chelle \316\273" simple_value: 0.125 }
}'
encode negstep 'wall_time: 1700000000.5 step: -3 summary { value { tag: "a" simple_value: 1 } }'
encode zero 'summary { value { tag: "zero/value" simple_value: 0 } }'
encode negzero_time 'wall_time: -0.0 step: 1 summary { value { tag: "t" simple_value: -0.0 } }'
encode empty_tag 'wall_time: 2.0 step: 9223372036854775807 summary { value { simple_value: 2.5 } }'
