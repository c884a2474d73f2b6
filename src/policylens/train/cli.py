"""``policylens train``: PPO from a preset, options overriding it."""
from __future__ import annotations

import argparse

from ..config import add_dataclass_args, from_args
from .config import PRESETS, TrainConfig

DESCRIPTION = """Train an agent with PPO. Start from a preset and override any option:

  policylens train --preset minigrid --out runs/do8
  policylens train --preset minigrid-recurrent --stop-success 0.95 --out runs/do8-rec
  policylens train --preset procgen-easy --arch clear --out runs/coinrun-clear
  policylens train --out runs/do8 --resume          # continue after Ctrl-C or a kill
  policylens train --out runs/do8 --overwrite       # start again, replacing the run (else it is refused)

Presets (architecture, envs x steps per rollout, learning rate; the env below):
""" + "\n".join(f"  {k}: {v['arch']}{' (' + v['arch_options'] + ')' if v.get('arch_options') else ''}"
                f"{' + GRU' if v.get('recurrent') else ''}{', bptt ' + str(v['bptt']) if v.get('bptt') else ''}, "
                f"{v['num_envs']}x{v['num_steps']}, lr {v['lr']:g}\n      {v['env']}" for k, v in PRESETS.items())


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="policylens train", description=DESCRIPTION,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_dataclass_args(parser, TrainConfig)
    cfg = from_args(TrainConfig, parser.parse_args(argv))
    from .ppo import train
    from .update import TrainingStopped

    try:
        out = train(cfg)
    except KeyboardInterrupt:
        raise SystemExit(130)
    except TrainingStopped as e:
        parser.exit(1, f"{parser.prog}: error: {e}\n")
    print(f"trained: {out / 'agent'}  (curve: {out / 'curve.png'}, log: {out / 'train.csv'})")
