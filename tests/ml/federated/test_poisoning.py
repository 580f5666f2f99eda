import pytest

from ml.federated.simulate import SPEC, plain_fedavg_loop, synthetic_split

# The digits task, 10 IID parties; local SGD lr 0.1 for 3 epochs so that 20 rounds reach the plateau (~0.97).
RUN = {"rounds": 20, "recipe": {"lr": 0.1, "batch_size": 32, "local_epochs": 3}, "seed": 0}
POISONED = {"byzantine": 3, "attack_scale": 10.0}  # parties 8-10 send -10 x their honest delta


@pytest.mark.slow
def test_robust_strategies_hold_the_clean_accuracy_against_three_sign_flipping_parties_and_fedavg_does_not():
    clean = plain_fedavg_loop(**RUN)["final_accuracy"]
    fedavg = plain_fedavg_loop(**RUN, **POISONED)["final_accuracy"]
    multi_krum = plain_fedavg_loop(**RUN, **POISONED, strategy="multi_krum", options={"num_malicious": 3})
    median = plain_fedavg_loop(**RUN, **POISONED, strategy="median")["final_accuracy"]
    # trim_beta must cut at least the attackers' share from each end (Flower's default 0.2 cuts 2 of the 3).
    trimmed = plain_fedavg_loop(**RUN, **POISONED, strategy="trimmed_mean", options={"trim_beta": 0.3})
    assert clean > 0.95
    assert fedavg < clean - 0.5
    assert abs(multi_krum["final_accuracy"] - clean) <= 0.02
    assert multi_krum["excluded"][-1] == 3
    # Coordinate-wise median and trimmed mean are pulled against the gradient by the attackers, who mostly sit
    # on one side of each coordinate, by a fraction of the spread of the honest updates; with only ~144 rows
    # per party that spread is wide and they stall on a plateau (~0.94-0.95) below clean FedAvg's. Measured,
    # points below clean FedAvg for seeds 0-4: median 2.2, 1.7, 3.3, 1.9, 2.5; trimmed mean 2.2, 1.9, 4.4, 2.5,
    # 2.5; Multi-Krum -0.6, 0.8, 1.1, 0.3, 0.6; FedAvg 96, 85, 93, 94, 95. Below their own clean runs, median
    # and trimmed mean lose 1.7-2.5 and 1.9-3.6. More rounds (60), lr 0.05 or 1 local epoch, full-batch local
    # GD, batch 16, a 512-wide hidden layer, or trim_beta 0.4 leave seed 0 at 2.2-4.2 points, so the issue's
    # 2 points is not met for these two; this seed's 2.2 is asserted with 3 points, not the 2.
    assert abs(median - clean) <= 0.03
    assert abs(trimmed["final_accuracy"] - clean) <= 0.03


@pytest.mark.slow
def test_with_2000_rows_per_party_median_and_trimmed_mean_also_hold_the_clean_accuracy():
    # 10 IID parties of 2,000 generated rows each (make_classification: 20 features, 10 informative, 4 classes,
    # class_sep 1.5, random_state 0), an MLP 20-64-4, local SGD lr 0.1, batch 64, one epoch, 10 rounds (clean
    # FedAvg's plateau, ~0.96). With this much data per party the honest updates agree, and the attackers' pull
    # on the per-coordinate estimates is small. Measured, points below clean FedAvg (0.958, 0.960, 0.959, 0.960,
    # 0.962) for seeds 0-4: median -0.1, 0.3, 0.4, 0.4, 0.5; trimmed mean 0.0, 0.3, 0.5, 0.6, 0.5; Multi-Krum
    # -0.2, -0.1, 0.0, 0.0, 0.1; FedAvg 94, 79, 95, 95, 86. This test runs seed 0.
    data = synthetic_split(10, rows_per_party=2000, features=20, classes=4, class_sep=1.5, seed=0)
    spec = {**SPEC, "input_width": 20, "hidden": [64], "output_width": 4}
    run = {"rounds": 10, "recipe": {"lr": 0.1, "batch_size": 64, "local_epochs": 1}, "seed": 0}
    run |= {"data": data, "spec": spec}
    clean = plain_fedavg_loop(**run)["final_accuracy"]
    fedavg = plain_fedavg_loop(**run, **POISONED)["final_accuracy"]
    multi_krum = plain_fedavg_loop(**run, **POISONED, strategy="multi_krum", options={"num_malicious": 3})
    median = plain_fedavg_loop(**run, **POISONED, strategy="median")["final_accuracy"]
    trimmed = plain_fedavg_loop(**run, **POISONED, strategy="trimmed_mean", options={"trim_beta": 0.3})
    assert clean > 0.94
    assert fedavg < clean - 0.2
    assert multi_krum["excluded"][-1] == 3
    assert abs(multi_krum["final_accuracy"] - clean) <= 0.02
    assert abs(median - clean) <= 0.02
    assert abs(trimmed["final_accuracy"] - clean) <= 0.02
