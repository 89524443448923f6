#!/bin/bash
# `make test-slurm`: slurm/gem-train.sbatch on a throw-away Slurm on this machine.
#
# Starts slurmctld and slurmd (as root, -D, in the background) with the config of
# tests/slurm/slurm.conf.in in a temporary directory, trains the tiny model of the embedded task
# through the sbatch script on the CPU, and checks:
#   1. the two sbatch scripts: bash -n, shellcheck (when installed), one shared body
#   2. a plain run: `sbatch --wait` exits 0, the job is COMPLETED 0:0, the model is written
#   3. SIGTERM to the batch script, as --signal=B:TERM@120 sends it before the time limit
#      (`scancel --batch --signal=TERM`): the script has the ranks checkpoint and stop, requeues
#      the job, and the next start resumes and completes
#   4. preemption: a job of a higher-priority partition takes the node; the training job's steps
#      get SIGTERM, the script requeues it, it resumes and completes after the other job
#   5. `scontrol requeue` by an administrator: requeued by Slurm, resumes, completes
#   6. the runs of 3-5 end with the same model, bit for bit, as the same run uninterrupted
#   7. a config that does not exist: the job fails with the script's error line
#   8. the script's own GPU request (--gpus-per-task=1) on a node with 2 fake GPUs: srun is asked
#      for one GPU per rank and each of 2 ranks sees its own CUDA_VISIBLE_DEVICES
# and stops every daemon and job it started on every exit path.
#
# Environment:
#   GEMC_BIN, MAKE_TASK     gemc and make_task binaries (default ./gemc, build/make_task); both
#                           are copied into the temporary directory first
#   GEMC_SLURM_TEST_TASKS   tasks of the training job (default 1: gemc's single-process path;
#                           2 or more run the distributed pipeline with generators + learners)
#   GEMC_SLURM_TEST_AUTH    auto (default), none or munge (see tests/slurm/slurm.conf.in)
#   GEMC_SLURM_TEST_EXPECT_RESUME  1 (default): each restarted job must resume from the
#                           checkpoint of its first start and end with the same weights, bit for
#                           bit, as an uninterrupted run; 0: only check that it completes
#   GEMC_SLURM_TEST_STEPS   steps of the runs that get interrupted (default 24; each is
#                           interrupted after its second step, so a much faster machine may
#                           need more to be still running when the signal lands)
#   GEMC_SLURM_TEST_GRACE   GraceTime of the preemptible partition (default 15 s: the script
#                           requeues the preempted job; 0: Slurm ends and requeues it at once)
#   GEMC_SLURM_TEST_KEEP=1  keep the temporary directory (logs, run dirs) after a pass too
set -uo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root" || exit 1
tasks=${GEMC_SLURM_TEST_TASKS:-1}
auth_mode=${GEMC_SLURM_TEST_AUTH:-auto}
t_start=$SECONDS

say() { printf 'slurm-test: %s\n' "$*"; }
ok() { printf 'slurm-test: ok   %s (%d s)\n' "$*" $((SECONDS - t_start)); }

tmp=""
ctld_pid="" slurmd_pid="" munged_pid=""
failed=0

fail() {
    failed=1
    printf 'slurm-test: FAIL %s\n' "$*" >&2
    if [ -n "$tmp" ] && [ -d "$tmp/log" ]; then
        for f in "$tmp"/log/*; do
            [ -s "$f" ] || continue
            printf '\n---- last lines of %s\n' "$f" >&2
            tail -n 25 "$f" >&2
        done
    fi
    exit 1
}

# -- Slurm itself
slurm_cmds="slurmctld slurmd sbatch scontrol scancel squeue sinfo srun"
missing_slurm() {
    for c in $slurm_cmds; do command -v "$c" >/dev/null 2>&1 || return 0; done
    return 1
}
if missing_slurm; then
    pkgs=(slurmctld slurmd slurm-client munge)
    if [ "$(id -u)" != 0 ]; then
        fail "Slurm is not installed (HINT: sudo apt-get install -y --no-install-recommends ${pkgs[*]})"
    fi
    say "installing Slurm with apt-get: ${pkgs[*]}"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt_out=$({ apt-get update -qq && apt-get install -y -qq --no-install-recommends "${pkgs[@]}"; } 2>&1); then
        printf '%s\n' "$apt_out" | tail -n 20 >&2
        fail "apt-get install ${pkgs[*]} failed"
    fi
    missing_slurm && fail "Slurm commands still missing after apt-get ($slurm_cmds)"
fi
[ "$(id -u)" = 0 ] || fail "the local Slurm runs its daemons as root (HINT: run as root: sudo make test-slurm)"
slurm_version=$(slurmd -V 2>/dev/null | awk '{print $2}') # "slurm 22.05.8"
case $tasks in
'' | *[!0-9]* | 0) fail "GEMC_SLURM_TEST_TASKS=$tasks: needs a number >= 1" ;;
esac
grace=${GEMC_SLURM_TEST_GRACE:-15}
case $grace in
'' | *[!0-9]*) fail "GEMC_SLURM_TEST_GRACE=$grace: needs a number of seconds" ;;
esac
case ${GEMC_SLURM_TEST_STEPS:-24} in
'' | *[!0-9]* | [0-4]) fail "GEMC_SLURM_TEST_STEPS=${GEMC_SLURM_TEST_STEPS:-}: needs a number >= 5" ;;
esac

# -- cleanup on every exit path: jobs, daemons, then any process still carrying our SLURM_CONF
# (slurmstepd and job processes outlive slurmd), all by pid
our_pids() {
    local e p
    for e in /proc/[0-9]*/environ; do
        p=${e#/proc/}
        p=${p%/environ}
        [ "$p" = $$ ] && continue
        tr '\0' '\n' 2>/dev/null <"$e" | grep -qxF "SLURM_CONF=$tmp/slurm.conf" && echo "$p"
    done
}
alive() { # pid: running, and not a zombie waiting to be reaped
    [ -e "/proc/$1" ] && ! grep -q '^[0-9]* (.*) Z' "/proc/$1/stat" 2>/dev/null
}
stop_pid() { # pid...: SIGTERM, up to 5 s to exit, then SIGKILL
    local p any
    [ $# -gt 0 ] || return 0
    kill -TERM "$@" 2>/dev/null
    for _ in $(seq 50); do
        any=0
        for p in "$@"; do alive "$p" && any=1; done
        [ "$any" = 0 ] && return 0
        sleep 0.1
    done
    kill -KILL "$@" 2>/dev/null
    return 0
}
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [ -n "$ctld_pid" ] && alive "$ctld_pid"; then
        timeout 10 scancel --quiet --user=root >/dev/null 2>&1
        for _ in $(seq 50); do
            [ -z "$(timeout 5 squeue -h -o %i 2>/dev/null)" ] && break
            sleep 0.1
        done
    fi
    # shellcheck disable=SC2086 # pids, one word each, or none
    stop_pid $slurmd_pid $ctld_pid
    # shellcheck disable=SC2046
    [ -n "$tmp" ] && stop_pid $(our_pids)
    # shellcheck disable=SC2086
    stop_pid $munged_pid
    if [ -n "$tmp" ] && [ -d "$tmp" ]; then
        if [ "$failed" = 1 ] || [ "$rc" != 0 ] || [ "${GEMC_SLURM_TEST_KEEP:-0}" = 1 ]; then
            say "kept $tmp (logs in $tmp/log, job output in $tmp/work)"
        else
            rm -rf "$tmp"
        fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'fail "interrupted"' INT TERM

tmp=$(mktemp -d "${TMPDIR:-/tmp}/gemc-slurm.XXXXXX") || fail "mktemp failed"
chmod 700 "$tmp"
mkdir -p "$tmp/state" "$tmp/spool" "$tmp/log" "$tmp/bin" "$tmp/work" "$tmp/tmpfs"
export SLURM_CONF="$tmp/slurm.conf"
say "Slurm $slurm_version, temporary directory $tmp, $tasks task(s)"

# -- the scripts themselves
for s in slurm/gem-train.sbatch slurm/gem-train-multinode.sbatch; do
    [ -f "$s" ] || fail "$s is missing"
    bash -n "$s" || fail "$s: bash -n"
    if command -v shellcheck >/dev/null 2>&1; then
        shellcheck "$s" || fail "$s: shellcheck"
    fi
done
body() { sed -n '/^# ---- common body/,$p' "$1"; }
[ -n "$(body slurm/gem-train.sbatch)" ] || fail "slurm/gem-train.sbatch has no '# ---- common body' line"
diff <(body slurm/gem-train.sbatch) <(body slurm/gem-train-multinode.sbatch) >"$tmp/log/body.diff" ||
    fail "the two sbatch scripts differ below '# ---- common body' (see $tmp/log/body.diff)"
ok "scripts: bash -n$(command -v shellcheck >/dev/null 2>&1 && echo ', shellcheck'), one common body"

# -- gemc and the tiny training setup (copies: another build may replace ./gemc meanwhile)
copy_bin() { # src dst: retried, since a concurrent link may leave the file busy or partial
    for _ in 1 2 3 4 5; do
        cp "$1" "$2.tmp" 2>/dev/null && mv "$2.tmp" "$2" && return 0
        sleep 2
    done
    return 1
}
gemc_src=${GEMC_BIN:-./gemc}
mt_src=${MAKE_TASK:-build/make_task}
[ -x "$gemc_src" ] || fail "$gemc_src: no gemc binary (HINT: make gemc, or run make test-slurm)"
[ -x "$mt_src" ] || fail "$mt_src: no make_task binary (HINT: make build/make_task)"
copy_bin "$gemc_src" "$tmp/bin/gemc" || fail "cannot copy $gemc_src"
copy_bin "$mt_src" "$tmp/bin/make_task" || fail "cannot copy $mt_src"
gemc="$tmp/bin/gemc"
w="$tmp/work"
"$tmp/bin/make_task" --seed 1 --out "$w/task" >"$tmp/log/setup.log" 2>&1 ||
    fail "make_task failed (see $tmp/log/setup.log)"
"$gemc" init --config "$w/task/config.json" --tokenizer "$w/task" --out "$w/init" --seed 1 \
    --dtype f32 >>"$tmp/log/setup.log" 2>&1 || fail "gemc init failed (see $tmp/log/setup.log)"
cp tests/slurm/train.yaml "$w/train.yaml"
ok "tiny model and task in $w"

# -- slurm.conf
plugdir=""
ma=$(gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
for d in "/usr/lib/$ma/slurm-wlm" "/usr/lib/$ma/slurm" /usr/lib64/slurm /usr/lib/slurm /usr/local/lib/slurm; do
    if [ -e "$d/select_cons_tres.so" ]; then
        plugdir=$d
        break
    fi
done
[ -n "$plugdir" ] || fail "cannot find Slurm's plugin directory (select_cons_tres.so)"
has_plugin() { [ -e "$plugdir/$1.so" ]; }

case $auth_mode in
auto) if has_plugin auth_none; then auth_mode=none; else auth_mode=munge; fi ;;
none) has_plugin auth_none || fail "GEMC_SLURM_TEST_AUTH=none: this Slurm has no auth_none plugin" ;;
munge) ;;
*) fail "GEMC_SLURM_TEST_AUTH=$auth_mode: auto, none or munge" ;;
esac
cred_expire=5
if [ "$auth_mode" = none ]; then
    auth_type=auth/none
    auth_info="cred_expire=$cred_expire"
else
    # no auth/none in this Slurm: a private munged with a fresh key
    command -v munged >/dev/null 2>&1 || fail "auth/munge needs munged (HINT: apt-get install munge)"
    auth_type=auth/munge
    auth_info="cred_expire=$cred_expire,socket=$tmp/munge.socket"
    dd if=/dev/urandom of="$tmp/munge.key" bs=1024 count=1 status=none
    chmod 400 "$tmp/munge.key"
    setsid munged --foreground --force --socket="$tmp/munge.socket" --key-file="$tmp/munge.key" \
        --pid-file="$tmp/munged.pid" --log-file="$tmp/log/munged.log" \
        --seed-file="$tmp/munged.seed" >"$tmp/log/munged.out" 2>&1 </dev/null &
    munged_pid=$!
    for _ in $(seq 50); do [ -S "$tmp/munge.socket" ] && break; sleep 0.1; done
    [ -S "$tmp/munge.socket" ] || fail "munged did not start (see $tmp/log/munged.out)"
fi
if has_plugin cred_none && [ "$auth_mode" = none ]; then cred_type=cred/none; else cred_type=cred/munge; fi
mpi_line="# MpiDefault: none (mpi_pmix not installed)"
has_plugin mpi_pmix && mpi_line="MpiDefault=pmix"

node=$(hostname -s)
# this machine's CPUs and topology as slurmd sees them; more CPUs declared when the test asks
# for more tasks than there are cores (config_overrides)
hw=$(slurmd -C 2>/dev/null | head -1)
ncpu=$(sed -n 's/.*CPUs=\([0-9]*\).*/\1/p' <<<"$hw")
[ -n "$ncpu" ] || ncpu=$(nproc)
want=$((tasks > 2 ? tasks : 2)) # the GPU check runs 2 ranks
if [ "$want" -gt "$ncpu" ]; then
    ncpu=$want
    node_line="NodeName=$node NodeAddr=127.0.0.1 CPUs=$ncpu"
else
    topo=$(grep -o -E '(Boards|SocketsPerBoard|CoresPerSocket|ThreadsPerCore)=[0-9]+' <<<"$hw" | tr '\n' ' ')
    node_line="NodeName=$node NodeAddr=127.0.0.1 CPUs=$ncpu $topo"
fi
cpus_per_task=$((ncpu / tasks))
# 2 fake GPUs: character devices (the numbers of /dev/null) that Slurm hands out by index
ngpu=2
mkdir -p "$tmp/dev"
fake_gpus=1
for i in $(seq 0 $((ngpu - 1))); do mknod "$tmp/dev/fakegpu$i" c 1 3 2>/dev/null || fake_gpus=0; done
if [ "$fake_gpus" = 1 ]; then
    node_line="$node_line Gres=gpu:$ngpu"
    echo "NodeName=$node Name=gpu File=$tmp/dev/fakegpu[0-$((ngpu - 1))]" >"$tmp/gres.conf"
fi
node_line="$node_line State=UNKNOWN"

free_port() { # a port with nothing listening on it, nor on the next one
    local p
    for _ in $(seq 100); do
        p=$((20000 + RANDOM % 30000))
        (: <"/dev/tcp/127.0.0.1/$p") 2>/dev/null && continue
        (: <"/dev/tcp/127.0.0.1/$((p + 1))") 2>/dev/null && continue
        echo "$p"
        return 0
    done
    return 1
}
port=$(free_port) || fail "no free TCP port for slurmctld"
sed -e "s|@HOST@|$node|g" -e "s|@NODE@|$node|g" -e "s|@DIR@|$tmp|g" \
    -e "s|@CTLD_PORT@|$port|" -e "s|@SLURMD_PORT@|$((port + 1))|" \
    -e "s|@AUTH_TYPE@|$auth_type|" -e "s|@CRED_TYPE@|$cred_type|" -e "s|@AUTH_INFO@|$auth_info|" \
    -e "s|@MPI_LINE@|$mpi_line|" -e "s|@KILL_WAIT@|15|" -e "s|@GRACE@|$grace|" \
    -e "s|@NODE_LINE@|$node_line|" tests/slurm/slurm.conf.in >"$SLURM_CONF"
grep -v '^#' "$SLURM_CONF" | grep -q '@[A-Z_]*@' && fail "unreplaced @NAME@ in $SLURM_CONF"
# cgroup.conf: 24.05+ may touch cgroups even with proctrack/linuxproc; "disabled" stops it
# (23.11 and older do not know the value, and leave cgroups alone without cgroup plugins)
case $slurm_version in
2[4-9].* | [3-9]*.*) echo "CgroupPlugin=disabled" >"$tmp/cgroup.conf" ;;
esac

# -- the training runs: a 2-step one, and longer ones (about 0.3 s a step on a laptop core, so
# the interruptions land mid-run) with a checkpoint every 2 steps besides the one of SIGTERM
run_args() { # run dir, steps
    echo "train.model=$w/init" "train.dir=$1" "train.data=$w/task/train_prompts.jsonl" \
        "train.steps=$2" run.save_every=2
}
long_steps=${GEMC_SLURM_TEST_STEPS:-24}
long_opts=(sampling.max_new_tokens=32 train.batch_size=4)
# the uninterrupted reference of the longer runs, outside Slurm (one process: with several tasks
# the interrupted runs are compared with each other instead)
if [ "$tasks" = 1 ] && [ "${GEMC_SLURM_TEST_EXPECT_RESUME:-1}" = 1 ]; then
    # shellcheck disable=SC2046 # run_args: words without spaces
    OMP_NUM_THREADS=$cpus_per_task "$gemc" train "$w/train.yaml" $(run_args "$w/reference" "$long_steps") \
        "${long_opts[@]}" >"$tmp/log/reference.log" 2>&1 ||
        fail "the reference run outside Slurm failed (see $tmp/log/reference.log)"
    ok "reference run outside Slurm: $long_steps steps uninterrupted"
fi

# -- the daemons, in sessions of their own: a Ctrl-C on the test reaches the test, whose
# cleanup then cancels the jobs while slurmctld is still there to do it
setsid slurmctld -D -f "$SLURM_CONF" >"$tmp/log/slurmctld.out" 2>&1 </dev/null &
ctld_pid=$!
setsid slurmd -D -f "$SLURM_CONF" -N "$node" >"$tmp/log/slurmd.out" 2>&1 </dev/null &
slurmd_pid=$!
up=0
for _ in $(seq 150); do
    kill -0 "$ctld_pid" 2>/dev/null || fail "slurmctld exited (see $tmp/log/slurmctld.out)"
    kill -0 "$slurmd_pid" 2>/dev/null || fail "slurmd exited (see $tmp/log/slurmd.out)"
    if [ "$(sinfo -h -p gemc -n "$node" -o %t 2>/dev/null)" = idle ]; then
        up=1
        break
    fi
    sleep 0.2
done
[ "$up" = 1 ] || fail "node $node never became idle: $(sinfo -h -o '%t %E' 2>&1)"
ok "slurmctld + slurmd up: $auth_type, $cred_type, ${mpi_line#\# }, node $node with $ncpu CPUs"

# -- helpers for the jobs
job_field() { # jobid field -> value from `scontrol show job`
    scontrol show job "$1" 2>/dev/null | tr ' ' '\n' | sed -n "s/^$2=//p" | head -1
}
wait_done() { # jobid seconds: until the job is finished (COMPLETED, FAILED, ...)
    local s
    for _ in $(seq $((${2} * 5))); do
        s=$(job_field "$1" JobState)
        case $s in
        COMPLETED | FAILED | CANCELLED | TIMEOUT | NODE_FAIL | OUT_OF_MEMORY | BOOT_FAIL | DEADLINE) return 0 ;;
        esac
        sleep 0.2
    done
    return 1
}
wait_steps() { # dir n seconds: until metrics.jsonl of run dir has n lines (the job is training)
    for _ in $(seq $(($3 * 5))); do
        [ -f "$1/metrics.jsonl" ] && [ "$(wc -l <"$1/metrics.jsonl")" -ge "$2" ] && return 0
        sleep 0.2
    done
    return 1
}
expect_completed() { # jobid name out restarts
    local st ec rs
    st=$(job_field "$1" JobState)
    ec=$(job_field "$1" ExitCode)
    rs=$(job_field "$1" Restarts)
    if [ "$st" != COMPLETED ] || [ "$ec" != 0:0 ]; then
        fail "$2: job $1 ended $st, exit code $ec (output: $3)"
    fi
    if [ "$rs" = 0 ] && [ "$4" = 1 ]; then
        fail "$2: job $1 finished before the interruption reached it (HINT: GEMC_SLURM_TEST_STEPS=$((long_steps * 4)); output: $3)"
    fi
    [ "$rs" = "$4" ] || fail "$2: job $1 restarted $rs times, expected $4 (output: $3)"
    grep -q 'srun exited with status 0' "$3" || fail "$2: no 'srun exited with status 0' in $3"
}
expect_model() { # run dir, name
    if [ ! -s "$1/final/model.safetensors" ] || [ ! -s "$1/final/config.json" ]; then
        fail "$2: no trained model in $1/final"
    fi
}
# The second start resumed from the first one's checkpoint: "resuming from checkpoint step N",
# then step N+1 first, and the final model is the uninterrupted run's, bit for bit. Sets $note.
# Called directly, never in $( ), so that fail ends the test.
resume_check() { # out, run dir, name
    local from first same=$w/reference
    from=$(sed -n '/start 2 (restarts: 1)/,$p' "$1" | grep -m1 -o 'resuming from checkpoint step [0-9]*' | grep -o '[0-9]*$')
    first=$(sed -n '/start 2 (restarts: 1)/,$p' "$1" | grep -m1 -o 'train step *[0-9]*' | grep -o '[0-9]*$')
    if [ "${GEMC_SLURM_TEST_EXPECT_RESUME:-1}" != 1 ]; then
        note="the second start began at step ${first:-?} (resume not checked)"
        return 0
    fi
    [ -n "$from" ] || fail "$3: the second start did not resume from a checkpoint (output: $1)"
    [ "${first:-0}" = $((from + 1)) ] ||
        fail "$3: resumed from step $from but trained step ${first:-?} first (output: $1)"
    [ "$tasks" = 1 ] || same=$w/sigterm
    cmp -s "$2/final/model.safetensors" "$same/final/model.safetensors" ||
        fail "$3: the model differs from $same/final's, bit for bit (output: $1)"
    note="resumed from step $from; final model identical to ${same##*/}/final's"
}

export GEMC_BIN="$gemc" GEMC_SLURM_GPUS=0
submit=(sbatch --parsable --gpus-per-task=0 --ntasks-per-node="$tasks" --cpus-per-task="$cpus_per_task"
    --time=10:00 --chdir="$w")
script="$root/slurm/gem-train.sbatch"

# -- a plain run, sbatch --wait
out="$w/plain.out"
# shellcheck disable=SC2046 # run_args: words without spaces
id=$(timeout 180 "${submit[@]}" --wait -o "$out" "$script" "$w/train.yaml" $(run_args "$w/plain" 2))
rc=$?
id=${id%%;*}
[ "$rc" = 0 ] || fail "plain run: sbatch --wait exited $rc (output: $out)"
expect_completed "$id" "plain run" "$out" 0
expect_model "$w/plain" "plain run"
if [ "$tasks" -gt 1 ]; then
    split="pipeline.generators=$((tasks / 2)) pipeline.learners=$((tasks - tasks / 2))"
    grep -q "gemc train .* $split\$" "$out" || fail "plain run: the srun line lacks '$split' ($out)"
fi
launch=$(grep -m1 -o 'mpi=[a-z0-9]*, gpus per task=[0-9]*' "$out")
ok "plain run: job $id COMPLETED 0:0, model written ($launch)"

# -- SIGTERM to the batch script (the time-limit warning of --signal=B:TERM@120)
out="$w/sigterm.out"
# shellcheck disable=SC2046
id=$("${submit[@]}" -o "$out" "$script" "$w/train.yaml" $(run_args "$w/sigterm" "$long_steps") "${long_opts[@]}") ||
    fail "sigterm: sbatch failed"
wait_steps "$w/sigterm" 2 60 || fail "sigterm: job $id never trained 2 steps (output: $out)"
scancel --batch --signal=TERM "$id" || fail "sigterm: scancel --batch --signal=TERM $id failed"
wait_done "$id" 120 || fail "sigterm: job $id not finished after 120 s (output: $out)"
expect_completed "$id" sigterm "$out" 1
grep -q 'SIGTERM: asking the ranks' "$out" || fail "sigterm: the script did not see SIGTERM ($out)"
grep -q 'stopped (SIGTERM); requeued' "$out" || fail "sigterm: the script did not requeue the job ($out)"
expect_model "$w/sigterm" sigterm
resume_check "$out" "$w/sigterm" sigterm
ok "SIGTERM to the batch script: job $id requeued itself, completed on restart 1; $note"

# -- preemption by a job of the higher-priority partition
out="$w/preempt.out"
# shellcheck disable=SC2046
id=$("${submit[@]}" -o "$out" "$script" "$w/train.yaml" $(run_args "$w/preempt" "$long_steps") "${long_opts[@]}") ||
    fail "preempt: sbatch failed"
wait_steps "$w/preempt" 2 60 || fail "preempt: job $id never trained 2 steps (output: $out)"
uid=$(sbatch --parsable -p urgent --exclusive -n 1 -c "$ncpu" -o "$w/urgent.out" \
    --wrap 'echo urgent job ran') || fail "preempt: cannot submit the urgent job"
wait_done "$uid" 120 || fail "preempt: urgent job $uid not finished after 120 s"
[ "$(job_field "$uid" JobState)" = COMPLETED ] || fail "preempt: urgent job $uid: $(job_field "$uid" JobState)"
wait_done "$id" 120 || fail "preempt: job $id not finished after 120 s (output: $out)"
expect_completed "$id" preempt "$out" 1
if [ "$grace" -gt 0 ]; then
    # during GraceTime only the steps are signalled: the script requeues
    grep -q 'stopped (preempted at .*); requeued' "$out" ||
        fail "preempt: the script did not requeue the preempted job ($out)"
else
    # no GraceTime: Slurm ends the job at once and requeues it itself
    grep -q 'not requeueing: Slurm is ending the job' "$out" ||
        fail "preempt: the script should have left the requeue to Slurm ($out)"
fi
expect_model "$w/preempt" preempt
resume_check "$out" "$w/preempt" preempt
ok "preemption: job $id stopped for urgent job $uid, requeued, completed on restart 1; $note"

# -- scontrol requeue (an administrator, or a node failure)
out="$w/requeue.out"
# shellcheck disable=SC2046
id=$("${submit[@]}" -o "$out" "$script" "$w/train.yaml" $(run_args "$w/requeue" "$long_steps") "${long_opts[@]}") ||
    fail "requeue: sbatch failed"
wait_steps "$w/requeue" 2 60 || fail "requeue: job $id never trained 2 steps (output: $out)"
scontrol requeue "$id" || fail "requeue: scontrol requeue $id failed"
wait_done "$id" 120 || fail "requeue: job $id not finished after 120 s (output: $out)"
expect_completed "$id" requeue "$out" 1
grep -q 'not requeueing: Slurm is ending the job' "$out" ||
    fail "requeue: the script should have left the requeue to Slurm ($out)"
expect_model "$w/requeue" requeue
resume_check "$out" "$w/requeue" requeue
ok "scontrol requeue: job $id completed on restart 1; $note"

# -- a config that does not exist: the job fails with the script's own error
out="$w/noconfig.out"
id=$(timeout 60 "${submit[@]}" --wait -o "$out" "$script" "$w/missing.yaml")
rc=$?
id=${id%%;*}
[ "$rc" != 0 ] || fail "missing config: sbatch --wait exited 0"
grep -q 'missing.yaml: cannot read the config' "$out" || fail "missing config: no error line in $out"
[ "$(job_field "$id" JobState)" = FAILED ] || fail "missing config: job $id is $(job_field "$id" JobState)"
ok "missing config: job $id FAILED with the script's error line"

# -- the script's own GPU request, on the fake GPUs: a wrapper in place of gemc prints what
# each rank got
if [ "$fake_gpus" = 1 ]; then
    out="$w/gpus.out"
    cat >"$tmp/bin/show-gpus" <<'SH'
#!/bin/sh
echo "rank $SLURM_PROCID of $SLURM_NTASKS: CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES-unset}"
SH
    chmod +x "$tmp/bin/show-gpus"
    id=$(env -u GEMC_SLURM_GPUS GEMC_BIN="$tmp/bin/show-gpus" timeout 120 sbatch --parsable --wait \
        --ntasks-per-node=$ngpu --cpus-per-task=1 --time=10:00 --chdir="$w" -o "$out" \
        "$script" "$w/train.yaml")
    rc=$?
    id=${id%%;*}
    [ "$rc" = 0 ] || fail "gpus: sbatch --wait exited $rc (output: $out)"
    grep -q 'gpus per task=1' "$out" || fail "gpus: the script did not take 1 GPU per task ($out)"
    grep -q 'srun .*--gpus-per-task=1 ' "$out" || fail "gpus: srun was not asked for --gpus-per-task=1 ($out)"
    devs=$(sed -n 's/^rank [0-9]* of [0-9]*: CUDA_VISIBLE_DEVICES=//p' "$out" | sort -u | tr '\n' ' ')
    [ "$(wc -w <<<"$devs")" = $ngpu ] || fail "gpus: $ngpu ranks saw CUDA_VISIBLE_DEVICES '$devs' ($out)"
    case $devs in *,* | *unset*) fail "gpus: a rank saw more or less than one GPU: $devs ($out)" ;; esac
    ok "GPU request: job $id, $ngpu ranks, one fake GPU each (CUDA_VISIBLE_DEVICES $devs)"
else
    say "skipped the GPU request check: cannot mknod fake GPU devices in $tmp/dev"
fi

say "PASS ($((SECONDS - t_start)) s)"
