"""Causes of Atari lives lost, proved on situations built from real play by RAM edits (real ALE, real OCAtari)."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("ale_py")
pytest.importorskip("ocatari")

import policylens.envs as E  # noqa: E402
from policylens.envs.atari_causes import REMOVE, survives  # noqa: E402


def until_life(env, action=0, steps=60):
    """Press ``action`` until a life is lost: that step's ``info["life"]`` (None if none was)."""
    for _ in range(steps):
        _, _, _, info = env.step([action])
        if "life" in info[0]:
            return info[0]["life"]
    return None


@pytest.fixture(scope="module")
def pacman():
    """Ms. Pac-Man 80 steps in (ghosts out of their pen), and the state there."""
    env = E.make("atari:ms_pacman?ground_truth=true&noop_max=0", num_envs=1, seed=0)
    for _ in range(80):
        env.step([0])
    return env, env.get_state()


def place(env, state, *ghosts):
    """Load ``state`` and put ghost ``k`` at Pac-Man's position plus ``(dx, dy)`` for each ``(k, dx, dy)`` (OCAtari's
    RAM map: Pac-Man at ram[10], ram[16], ghost k at ram[5 + k], ram[11 + k])."""
    env.set_state(state)
    ale = env.games[0].ale
    ram = ale.getRAM()
    for k, dx, dy in ghosts:
        ale.setRAM(5 + k, int(ram[10]) + dx)
        ale.setRAM(11 + k, int(ram[16]) + dy)


@pytest.mark.parametrize("slot,name", [(1, "sue"), (2, "inky"), (3, "pinky"), (4, "blinky")])
@pytest.mark.slow
def test_the_ghost_put_on_pac_man_is_the_cause(pacman, slot, name):
    env, state = pacman
    place(env, state, (slot, 0, 0))
    life = until_life(env)
    assert life == {"cause": "ghost", "culprit": name, "settled_by": "only one in reach", "lives": 2}
    env.set_state(state)
    assert until_life(env, steps=25) is None  # the control: no ghost put there, no life lost as soon


@pytest.mark.parametrize("killer,other,dx,dy", [(1, 2, 5, 0), (4, 3, 0, 6), (2, 3, 3, 3)])
@pytest.mark.slow
def test_two_ghosts_in_reach_are_settled_by_replay(pacman, killer, other, dx, dy):
    """One ghost on Pac-Man, another overlapping his box a few pixels off: both in reach, and the boxes alone
    cannot tell (for 4/3 the nearer by slot order would be pinky); the counterfactual replay names the ghost
    whose removal saves the life, and keeping that ghost alone still kills."""
    env, state = pacman
    place(env, state, (killer, 0, 0), (other, dx, dy))
    life = until_life(env)
    causes = env.truth.causes
    run, cands = causes.last_run
    assert set(cands) == {killer, other}
    assert life["settled_by"] == "replay" and life["cause"] == "ghost"
    assert life["culprit"] == {1: "sue", 2: "inky", 3: "pinky", 4: "blinky"}[killer]
    actions = [a for s in run for a in s["actions"]]
    assert not survives(causes.replayer(), run[0]["state"], actions, REMOVE["ms_pacman"][other], extra=4)


@pytest.mark.slow
def test_asterix_lyre_in_the_players_lane_is_the_cause():
    env = E.make("atari:asterix?ground_truth=true&noop_max=0", num_envs=1, seed=0)
    for _ in range(40):
        env.step([0])
    state = env.get_state()
    for lane in (0, 2, 5):  # OCAtari's map: the player's lane ram[39], x ram[41]; lane i's object x ram[42 + i]
        env.set_state(state)
        ale = env.games[0].ale
        assert ale.getRAM()[29 + lane] % 2 == 1  # a lyre (enemy) in that lane
        ale.setRAM(39, lane)
        ale.setRAM(41, int(ale.getRAM()[42 + lane]))
        life = until_life(env)
        assert life == {"cause": "enemy", "culprit": f"enemy{9 + lane}", "settled_by": "only one in reach",
                        "lives": 2}


@pytest.mark.slow
def test_space_invaders_deaths_in_real_play_are_bullets_whose_removal_saves_the_life():
    env = E.make("atari:space_invaders?ground_truth=true", num_envs=1, seed=0)
    causes, rng, seen = env.truth.causes, np.random.default_rng(0), []
    for _ in range(450):
        _, _, _, info = env.step(rng.integers(0, 6, 1))
        if "life" in info[0]:
            life = info[0]["life"]
            run, cands = causes.last_run
            seen.append(life)
            assert life["cause"] == "bullet" and life["culprit"] in ("bullet4", "bullet5")
            slot = int(life["culprit"][-1])
            actions = [a for s in run for a in s["actions"]]
            assert survives(causes.replayer(), run[0]["state"], actions, REMOVE["space_invaders"][slot], extra=4)
            assert not survives(causes.replayer(), run[0]["state"], actions, None, extra=4)
    assert len(seen) >= 2


@pytest.mark.slow
def test_space_invaders_invaders_brought_down_to_the_ground_are_the_cause():
    env = E.make("atari:space_invaders?ground_truth=true&noop_max=0", num_envs=1, seed=0)
    for _ in range(40):
        env.step([0])
    state = env.get_state()
    env.games[0].ale.setRAM(16, 70)  # OCAtari's map: the invaders' rows are at 31 + 2 * ram[16] + 18 * row
    _, _, done, info = env.step([0])
    assert done[0] and info[0]["episode"]["cause"] == "alien" and info[0]["life"]["cause"] == "alien"
    env.set_state(state)  # the control: the invaders where they were
    assert not any(env.step([0])[2][0] for _ in range(10))


@pytest.mark.slow
def test_breakout_and_pong_rules():
    env = E.make("atari:breakout?ground_truth=true", num_envs=1, seed=0)
    lives = []
    for t in range(400):  # FIRE now and then to serve, the paddle kept left: the ball is missed
        _, _, _, info = env.step([1 if t % 20 == 0 else 3])
        lives += [info[0]["life"]] if "life" in info[0] else []
    assert len(lives) >= 2 and all(life["cause"] == "ball" and life["settled_by"] == "rule" for life in lives)
    assert [life["lives"] for life in lives[:2]] == [4, 3]
    pong = E.make("atari:pong?ground_truth=true", num_envs=1, seed=0)
    conceded = 0
    for _ in range(900):
        _, reward, done, info = pong.step([0])
        conceded += int(reward[0] < 0)
        assert ("life" in info[0]) == (reward[0] < 0) and info[0].get("life", {"cause": "ball"})["cause"] == "ball"
        if done[0]:
            assert info[0]["episode"]["cause"] == "ball" and conceded == 21
            break
    assert done[0]


def test_a_game_without_a_rule_says_other():
    env = E.make("atari:seaquest?ground_truth=true", num_envs=1, seed=0)
    rng = np.random.default_rng(0)
    for _ in range(300):
        _, _, _, info = env.step(rng.integers(0, 18, 1))
        if "life" in info[0]:
            assert info[0]["life"]["cause"] == "other" and info[0]["life"]["settled_by"] == "no rule for this game"
            return
    pytest.fail("no life lost in 300 steps of random Seaquest")


def test_hidden_atari_kinds_bring_about_their_own_cause():
    """compare --invisible reads the blindness of a hidden kind from the cause it brings about: on Atari the
    category itself (a Breakout ball is not MiniGrid's obstacle), and each such cause is in the vocabulary."""
    from policylens.envs import CAUSES
    from policylens.evaluate.compare import cause_of

    assert cause_of("ball", "atari:breakout?invisible=ball") == "ball"
    assert cause_of("ball", "minigrid:MiniGrid-Dynamic-Obstacles-8x8-v0?invisible=ball") == "obstacle"
    assert {"ball", "ghost", "bullet", "alien", "enemy"} <= set(CAUSES)
