#!/usr/bin/env bash
# Remake every analysis behind the zoo simulator's report (zoo/minigrid-do8-recurrent/sim/report.md) from a fresh
# checkout: the rollouts stores, fidelity on a store recorded apart against the VAE+LSTM baseline, hidden-state
# directions, saliency through time, behaviours, and the IC1 -> IC3 swap at the simulator's horizon and over
# whole episodes. Its steps, run separately in session 13, took about 75 minutes in all on 2 CPU cores (33 of
# them the baseline's training, skipped when it is there); not yet timed as one run.
#
#   bash benchmarks/zoo_sim_report.sh    # the analyses (runs/minigrid-do8-recurrent/analysis), then the report
#
# The report's opening paragraphs come from zoo/minigrid-do8-recurrent/sim/note.md (NOTE=FILE for another): they
# quote the figures, so read the new tables against them before committing.
#
# BASELINE_STEPS (default 14386, what the zoo's first baseline reached in the simulator's 2534 s) sets the
# baseline's budget in steps, so that a slower or busier machine trains the same baseline.
set -euo pipefail
cd "$(dirname "$0")/.."
PL=${PL:-.venv/bin/policylens}
RUN=zoo:minigrid-do8-recurrent
R=runs/minigrid-do8-recurrent
A=$R/analysis
[ -d $R/rollouts.zarr ] || $PL record $RUN --episodes 2000 --progress false
[ -d $R/rollouts-test.zarr ] || $PL record $RUN --episodes 2000 --seed 1000000 --out $R/rollouts-test.zarr --progress false
baseline=auto
[ -f $R/sim/baseline/config.json ] || baseline=train
$PL sim fidelity $RUN --test-store $R/rollouts-test.zarr --windows 4096 --baseline $baseline \
    --baseline-steps "${BASELINE_STEPS:-14386}" --progress false
# again on 20,000 episodes recorded apart, and on the windows of its long episodes where 32 steps exist
[ -d $R/rollouts-test20k.zarr ] || $PL record $RUN --episodes 20000 --seed 1000000 --out $R/rollouts-test20k.zarr \
    --progress false
$PL sim fidelity $RUN --test-store $R/rollouts-test20k.zarr --horizon 10 --windows 16384 --ceiling-draws 0 \
    --closed-loop-draws 0 --out $A/fidelity-20k --progress false
$PL sim fidelity $RUN --test-store $R/rollouts-test20k.zarr --horizon 32 --reach 32 --windows 4096 --ceiling-draws 0 \
    --closed-loop-draws 0 --out $A/fidelity-reach32 --progress false
$PL sim hx $RUN --progress false
$PL sim saliency $RUN --target value --t 12 --samples 0-3 --progress false
$PL sim behaviours $RUN --progress false
$PL sim swap $RUN --directions $A/hx/ica --swap 0:2 --out $A/swap-ic1-ic3 --progress false
$PL sim swap $RUN --directions $A/hx/ica --swap 0:2 --sim-steps 253 --out $A/swap-ic1-ic3-253 --progress false
$PL sim report $RUN --out zoo/minigrid-do8-recurrent/sim --note "$(cat "${NOTE:-zoo/minigrid-do8-recurrent/sim/note.md}")" \
    --progress false
