"""Federated learning, pure: update tensors, aggregation strategies, local training, privacy, secure aggregation
and contribution scores. No Django; `federation/` (the app) and `federation.client` (the party's side) use it."""
