import numpy as np

from ml.federated.simulate import digits_split, plain_fedavg_loop


def test_the_digits_are_split_80_20_and_standardized_on_the_training_part():
    parties, (X_test, y_test) = digits_split(10)
    X = np.concatenate([x for x, _ in parties])
    assert len(parties) == 10 and X.shape == (1437, 64) and X_test.shape == (360, 64)
    assert {len(y) for _, y in parties} <= {143, 144}
    np.testing.assert_allclose(X.mean(axis=0), 0, atol=1e-5)
    assert X.dtype == np.float32 and y_test.dtype == np.int64


def test_a_dirichlet_split_gives_parties_skewed_label_mixes():
    iid, _ = digits_split(10, seed=0)
    skewed, _ = digits_split(10, alpha=0.5, seed=0)
    assert sum(len(y) for _, y in skewed) == 1437

    def top_share(parts):
        return np.mean([np.bincount(y, minlength=10).max() / len(y) for _, y in parts if len(y)])

    assert top_share(skewed) > 2 * top_share(iid)


def test_the_plain_loop_learns_and_repeats_exactly():
    first = plain_fedavg_loop(rounds=3)
    again = plain_fedavg_loop(rounds=3)
    assert first["digest"] == again["digest"] and first["accuracy"] == again["accuracy"]
    assert len(first["seconds"]) == 3 and first["accuracy"][-1] > 0.5
    assert first["accuracy"][-1] > first["accuracy"][0]
