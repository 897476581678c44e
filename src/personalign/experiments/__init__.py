"""Synthetic experiments: they sit above the library and call it like a user would.

- :mod:`personalign.experiments.models`: small models fitted to synthetic populations (for the experiments, the
  demo, the service benchmark and the tests).
- :mod:`personalign.experiments.bounds`: bounded personalization on a synthetic population with adversarial
  persons (universal pairs, extreme weights, personalization tax, monitor findings).
- :mod:`personalign.experiments.poisoning`: how far coordinated attackers move the shared reward, with and
  without influence caps.
- :mod:`personalign.experiments.bounds_report`: all of the above as ``personalign bounds report`` writes it
  (JSON, markdown, figures).
"""
