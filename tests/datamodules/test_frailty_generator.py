"""The embedded cohort's personal gait signature: per participant, fixed across strides,
scaled by CohortSpec.signature, absent at 0."""

import numpy as np

from datamodules.frailty.generator import SENSORS, CohortSpec, _gait_params, synth_gait


def _walk(signature: float, participant_seed: int, walk_seed: int) -> np.ndarray:
    params = _gait_params(0.3, np.random.default_rng(participant_seed), signature)
    return synth_gait(params, SENSORS[0], 20.0, np.random.default_rng(walk_seed))


def _distances(signature: float) -> tuple[np.ndarray, np.ndarray]:
    """Per participant: |features(first half) - features(second half)| of one walk, and
    |features(first half) - features(another participant's second half)|, same frailty."""

    def feat(x):
        return np.concatenate([x.mean(0), x.std(0)])

    within, between = [], []
    for p in range(1, 6):
        walk, other = _walk(signature, p, p), _walk(signature, p + 10, p)
        h = len(walk) // 2
        within.append(np.abs(feat(walk[:h]) - feat(walk[h:])).mean())
        between.append(np.abs(feat(walk[:h]) - feat(other[h:])).mean())
    return np.array(within), np.array(between)


def test_signature_identifies_the_walker():
    """Halves of one walk stay alike, other walkers of the same frailty differ, and more so
    with a stronger signature: what a window-shuffled split can exploit."""
    within, between = _distances(3.0)
    assert (within < between).all()
    assert between.mean() > 2 * _distances(0.0)[1].mean()


def test_signature_zero_adds_nothing_and_is_in_the_cohort_key():
    params = _gait_params(0.3, np.random.default_rng(0), 0.0)
    assert params["signature"] == 0.0 and params["tilt_deg"] == 8.0
    assert CohortSpec(signature=0.0).key() != CohortSpec(signature=1.0).key()
