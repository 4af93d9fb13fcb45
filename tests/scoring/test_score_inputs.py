"""From episode rows to score_cycle's arrays: missing episodes fail, errors don't make a miner live."""

from kinitro_dagster.scoring.inputs import build_score_inputs
from kinitro_dagster.warehouse.records import CommitmentRecord, CommitmentStatus, EpisodeRecord

ENVS = ["metaworld/reach-v3", "metaworld/push-v3"]


def _miner(uid: int, first_seen: int | None) -> CommitmentRecord:
    return CommitmentRecord(uid=uid, hotkey=f"5H{uid}", raw="a/b:1234567", commit_block=50 + uid,
                            status=CommitmentStatus.OK, first_seen_block=first_seen)


def _episode(uid: int, i: int, success: bool, error_kind: str | None = None) -> EpisodeRecord:
    return EpisodeRecord(uid=uid, episode=i, seed=i, success=success, total_reward=float(i), steps=10,
                         wall_seconds=0.1, error_kind=error_kind)


def test_rates_divide_by_episodes_per_env_and_errors_do_not_count_as_live():
    episodes = {
        ENVS[0]: [_episode(1, 0, True), _episode(1, 1, True),  # 2 of 4 ran, both succeeded
                  _episode(2, 0, False, "timeout"), _episode(2, 1, False, "timeout")],
        ENVS[1]: [_episode(1, 0, False)],
    }
    inputs = build_score_inputs([_miner(1, 7), _miner(2, None)], episodes, ENVS, n_episodes=4)

    assert inputs.success.tolist() == [[0.5, 0.0], [0.0, 0.0]]
    assert inputs.live.tolist() == [True, False]
    assert inputs.priority.tolist() == [7, 52]  # no first-seen block: the commit block
    by_key = {(s.uid, s.env_id): s for s in inputs.miner_scores}
    assert (by_key[(2, ENVS[0])].episodes_completed, by_key[(2, ENVS[0])].episodes_failed) == (0, 2)
    assert by_key[(1, ENVS[0])].mean_reward == 0.5
    assert by_key[(2, ENVS[1])].success_rate == 0.0 and by_key[(2, ENVS[1])].mean_reward == 0.0
