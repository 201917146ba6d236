"""Training candidates: methods (lora, qlora, prefix, prompt, full), the SFT loop, export.

Importing this package is cheap; torch, transformers and peft load when a function needs them.
"""
from harness.train.export import ExportResult, export_adapter
from harness.train.methods import METHODS, TrainParams, peft_config_for
from harness.train.sft import (
    METADATA_FILE,
    TrainResult,
    adapter_hash,
    is_overfitting,
    read_metadata,
    train_adapter,
)

__all__ = [
    "METHODS",
    "METADATA_FILE",
    "ExportResult",
    "TrainParams",
    "TrainResult",
    "adapter_hash",
    "export_adapter",
    "is_overfitting",
    "peft_config_for",
    "read_metadata",
    "train_adapter",
]
