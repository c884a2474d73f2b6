"""atari:GAME: real ALE (ale-py) behind the vector interface, CleanRL's and SB3's preprocessing, exact states."""
from __future__ import annotations

import numpy as np
import pytest

ale_py = pytest.importorskip("ale_py")
cv2 = pytest.importorskip("cv2")

import gymnasium as gym  # noqa: E402

import policylens.envs as E  # noqa: E402
from policylens.envs.atari import rom_id  # noqa: E402

gym.register_envs(ale_py)


def play(env, actions):
    """Step ``env`` through ``actions`` (T, N): [(obs, reward, done, info)] per step."""
    return [tuple(x.copy() if isinstance(x, np.ndarray) else x for x in env.step(a)) for a in actions]


def same(run_a, run_b) -> bool:
    return all((a[0] == b[0]).all() and (a[1] == b[1]).all() and (a[2] == b[2]).all() and a[3] == b[3]
               for a, b in zip(run_a, run_b)) and len(run_a) == len(run_b)


@pytest.mark.parametrize("name,rom", [("breakout", "breakout"), ("Breakout", "breakout"), ("ALE/Breakout-v5", "breakout"),
                                      ("BreakoutNoFrameskip-v4", "breakout"), ("MsPacman", "ms_pacman"),
                                      ("ms_pacman", "ms_pacman"), ("mspacman", "ms_pacman"),
                                      ("SpaceInvaders", "space_invaders")])
def test_game_names_resolve_to_ale_roms(name, rom):
    assert rom_id(name) == rom


def test_bad_names_and_options_say_what_is_expected():
    with pytest.raises(ValueError, match="unknown Atari game 'breakou'; did you mean breakout"):
        E.make("atari:breakou")
    with pytest.raises(ValueError, match=r"unknown atari option\(s\) \['frameskip'\]; expected any of noop_max"):
        E.make("atari:breakout?frameskip=4")
    with pytest.raises(ValueError, match="sticky=1.5; expected a probability"):
        E.make("atari:breakout?sticky=1.5")
    with pytest.raises(ValueError, match="frame_stack=0; expected an integer >= 1"):
        E.make("atari:breakout?frame_stack=0")
    with pytest.raises(ValueError, match="action 4 for env 0; breakout has actions 0..3"):
        E.make("atari:breakout").step([4])


# --- the frames are SB3's AtariWrapper's, step for step ------------------------------------------------------
class Reference:
    """Stable-Baselines3's AtariWrapper + VecFrameStack(channels_last), re-declared on Gymnasium's ALE v5 env
    without its own frame skip: NoopResetEnv (the no-op count given), MaxAndSkipEnv(4), FireResetEnv, WarpFrame
    (cv2 RGB2GRAY, INTER_AREA to 84x84), a 4-frame stack, newest last."""

    def __init__(self, game: str):
        self.env = gym.make(game, frameskip=1, repeat_action_probability=0.0)

    def skip(self, a):
        total, buf = 0.0, []
        for k in range(4):
            obs, r, term, trunc, _ = self.env.step(a)
            total += r
            if k >= 2:
                buf.append(obs)
            if term or trunc:
                break
        frame = np.max(np.stack(buf[-2:]), axis=0)
        grey = cv2.resize(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY), (84, 84), interpolation=cv2.INTER_AREA)
        return total, grey, term or trunc

    def reset(self, noops: int):
        self.env.reset(seed=0)
        for _ in range(noops):
            self.env.step(0)
        self.skip(1)
        _, grey, _ = self.skip(2)
        self.stack = np.stack([grey] * 4, -1)
        return self.stack

    def step(self, a):
        r, grey, done = self.skip(a)
        self.stack = np.concatenate([self.stack[..., 1:], grey[..., None]], -1)
        return self.stack, r, done


@pytest.mark.slow
def test_frames_equal_sb3_atari_wrapper_on_gymnasium_ale():
    env = E.make("atari:breakout", num_envs=1, seed=5)
    obs = env.reset(5)
    level_seed = env.games[0].level_seed
    ref = Reference("ALE/Breakout-v5")
    noops = int(np.random.default_rng(level_seed).integers(1, 31))
    assert (ref.reset(noops) == obs[0]).all()
    rng, rewards = np.random.default_rng(0), 0.0
    for t in range(150):
        a = int(rng.integers(4))
        obs, reward, done, info = env.step([a])
        ref_obs, ref_r, ref_done = ref.step(a)
        assert ref_r == reward[0] and ref_done == done[0]
        if done[0]:
            break
        assert (ref_obs == obs[0]).all(), f"step {t}"
        rewards += ref_r
    assert rewards > 0 and obs.shape == (1, 84, 84, 4) and obs.dtype == np.uint8


# --- states, seeds, episodes --------------------------------------------------------------------------------
@pytest.mark.parametrize("spec", ["atari:breakout", "atari:pong?frame_skip=1&sticky=0.25&noop_max=3",
                                  "atari:ms_pacman?sticky=0.25&grey=false&size=64&frame_stack=2"])
@pytest.mark.slow
def test_replay_from_a_restored_state_equals_the_original(spec):
    """Frame for frame, rewards, dones, infos (level seeds, episode records), the frame stack and the max-pool
    buffer (frame_skip=1 pools with the frame before the step) and the sticky-action draws included."""
    env = E.make(spec, num_envs=2, seed=3)
    rng = np.random.default_rng(1)
    play(env, rng.integers(0, env.action_space.n, (25, 2)))
    snap, obs = env.snapshot(), env.observe()
    actions = rng.integers(0, env.action_space.n, (40, 2))
    first = play(env, actions)
    assert len({o[0].tobytes() for o in first}) > 15  # the frames move
    assert (env.restore(snap) == obs).all()
    assert same(play(env, actions), first)
    fresh = E.make(spec, num_envs=2, seed=99)  # a state loads into any env of the same spec
    assert (fresh.restore(snap) == obs).all() and same(play(fresh, actions), first)
    with pytest.raises(ValueError, match="it is a state of"):
        E.make("atari:pong", num_envs=2).set_state(E.make("atari:breakout", num_envs=2).get_state())


@pytest.mark.slow
def test_same_seed_same_episodes_and_each_episode_has_its_level_seed():
    runs = []
    for _ in range(2):
        env = E.make("atari:breakout?noop_max=30", num_envs=2, seed=11)
        rng = np.random.default_rng(2)
        runs.append(play(env, rng.integers(0, 4, (300, 2))))
    assert same(*runs)
    episodes = [i["episode"] for step in runs[0] for i in step[3] if "episode" in i]
    assert len(episodes) >= 2
    assert len({e["level_seed"] for e in episodes}) == len(episodes)  # a new level seed per episode
    # the level seed fixes the episode: its no-op count, so its first frame
    env = E.make("atari:breakout", num_envs=1, seed=11)
    again = E.make("atari:breakout", num_envs=1, seed=12)
    assert env.games[0].level_seed != again.games[0].level_seed
    noops = [int(np.random.default_rng(e.games[0].level_seed).integers(1, 31)) for e in (env, again)]
    assert (noops[0] == noops[1]) == (env.observe() == again.observe()).all()


@pytest.mark.slow
def test_episodic_life_ends_the_interfaces_episode_at_each_life_and_the_game_goes_on():
    env = E.make("atari:breakout?episodic_life=true&clip_reward=true", num_envs=1, seed=0)
    rng, lives, games, ends, rewards = np.random.default_rng(0), [], [], [], set()
    for _ in range(1500):
        obs, reward, done, info = env.step(rng.integers(0, 4, 1))
        rewards |= set(reward.tolist())
        if done[0]:
            ends.append(info[0]["episode"])
            lives.append(env.games[0].ale.lives())
            if "game" in info[0]:
                games.append(info[0]["game"])
                lives[-1] = None
                if len(games) == 2 and 1.0 in rewards:
                    break
    assert rewards <= {0.0, 1.0} and 1.0 in rewards
    assert lives[:4] == [4, 3, 2, 1] and lives[4] is None  # one done per life, the same game goes on
    assert len(games) >= 1
    assert games[0]["return"] == sum(e["return"] for e in ends[:5])  # raw score, the game's own
    assert games[0]["length"] == sum(e["length"] for e in ends[:5])  # the agent's steps (not the resets')
    assert max(e["return"] for e in ends) >= 1


@pytest.mark.slow
def test_clip_reward_returns_signs_and_records_the_score():
    env = E.make("atari:ms_pacman?clip_reward=true", num_envs=2, seed=0)
    plain = E.make("atari:ms_pacman", num_envs=2, seed=0)
    rng, big = np.random.default_rng(0), 0
    for a in rng.integers(0, 9, (150, 2)):
        o, r, d, info = env.step(a)
        o2, r2, d2, info2 = plain.step(a)
        assert (r == np.sign(r2)).all() and (o == o2).all() and info == info2  # the records keep the score
        big += int((r2 > 1).sum())
    assert big > 10


@pytest.mark.slow
def test_fire_reset_starts_the_game_and_action_spaces():
    fired = E.make("atari:breakout", num_envs=1, seed=0)
    idle = E.make("atari:breakout?fire_reset=false", num_envs=1, seed=0)
    ball_y = 101  # OCAtari's Breakout map: ram[101] is the ball's y, 0 while no ball is in play
    assert fired.games[0].ale.getRAM()[ball_y] != 0 and idle.games[0].ale.getRAM()[ball_y] == 0
    full = E.make("atari:breakout?full_action_space=true", num_envs=1, seed=0)
    assert full.action_space.n == 18 and full.action_names[:2] == ["NOOP", "FIRE"]
    assert fired.action_names == ["NOOP", "FIRE", "RIGHT", "LEFT"]


@pytest.mark.slow
def test_sticky_actions_repeat_the_last_action():
    """With sticky=0.99 a pressed action almost never takes: the paddle hardly follows RIGHT presses."""
    moves = {}
    for p in (0.0, 0.99):
        env = E.make(f"atari:breakout?sticky={p}&noop_max=0", num_envs=1, seed=0)
        x0 = int(env.games[0].ale.getRAM()[72])  # ram[72]: the paddle's x
        play(env, [[2]] * 10)
        moves[p] = int(env.games[0].ale.getRAM()[72]) - x0
    assert moves[0.0] > 20 and abs(moves[0.99]) < moves[0.0] / 4


def test_max_frames_cuts_an_episode_as_a_timeout():
    env = E.make("atari:pong?max_frames=400&noop_max=0", num_envs=1, seed=0)
    for t in range(200):
        _, _, done, info = env.step([0])
        if done[0]:
            break
    assert info[0]["episode"]["cause"] == "timeout" and info[0]["episode"]["length"] == t + 1
    assert 90 <= t + 1 <= 101  # 400 frames, 4 a step (fire reset and no-ops count too)


@pytest.mark.slow
def test_one_life_ends_the_game_at_its_first_lost_life_and_the_next_episode_is_a_new_game():
    one = E.make("atari:breakout?one_life=true&ground_truth=true", num_envs=2, seed=3)
    whole = E.make("atari:breakout", num_envs=2, seed=3)  # the same level seeds, games played to the end
    rng, ends, seeds = np.random.default_rng(0), [], [[g.level_seed for g in one.games]]
    first = [g.level_seed for g in whole.games]
    while len(ends) < 6:
        obs, _, done, info = one.step(rng.integers(0, 4, 2))
        for i in np.flatnonzero(done):
            ends.append(info[i])
            assert one.games[i].ale.lives() == 5  # a new game, all its lives
        if done.any():
            seeds.append([g.level_seed for g in one.games])
    assert seeds[0] == first  # the same levels as whole games
    for e in ends:
        assert e["episode"]["cause"] == "ball" and e["life"]["cause"] == "ball"  # the one life lost, and to what
        assert e["game"]["length"] == e["episode"]["length"] and e["game"]["return"] == e["episode"]["return"]
    assert len({s for row in seeds for s in row}) == len(ends) + 2  # every episode its own level
