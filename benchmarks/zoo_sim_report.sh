#!/usr/bin/env bash
# Remake every analysis behind the zoo simulator's report (zoo/minigrid-do8-recurrent/sim/report.md) from a fresh
# checkout: the rollouts stores, fidelity on a store recorded apart against the VAE+LSTM baseline, hidden-state
# directions, saliency through time, behaviours, and the IC1 -> IC3 swap at the simulator's horizon and over
# whole episodes. About an hour on 2 CPU cores (the baseline's training is most of it, when it is not there yet).
#
#   bash benchmarks/zoo_sim_report.sh                     # the analyses, under runs/minigrid-do8-recurrent/analysis
#   NOTE=path/to/note.md bash benchmarks/zoo_sim_report.sh  # ... and the report, with that paragraph under its title
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
$PL sim hx $RUN --progress false
$PL sim saliency $RUN --target value --t 12 --samples 0-3 --progress false
$PL sim behaviours $RUN --progress false
$PL sim swap $RUN --directions $A/hx/ica --swap 0:2 --out $A/swap-ic1-ic3 --progress false
$PL sim swap $RUN --directions $A/hx/ica --swap 0:2 --sim-steps 253 --out $A/swap-ic1-ic3-253 --progress false
if [ -n "${NOTE:-}" ]; then
    $PL sim report $RUN --out zoo/minigrid-do8-recurrent/sim --note "$(cat "$NOTE")" --progress false
fi
