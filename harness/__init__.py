"""harness: an evaluation-first benchmarking harness for fine-tuning LLMs.

Declare measurable success goals in YAML first; the harness checks and splits the data
(sealing the test set), builds candidates (prompting baselines, peft adapters, API models),
scores them on the held-out test set and states a verdict per goal with confidence.
"""
__version__ = "0.1.0"
