"""Lets accelerate apply FSDP to CPU processes, for the multi-process tests only (imported at interpreter start-up
when this folder is on PYTHONPATH).

accelerate 1.x sets FSDP up only for GPU-like devices: for CPU processes (gloo) it keeps `MULTI_CPU` and trains
plain data-parallel. Its FSDP2 code itself (torch's `fully_shard`, sharded optimizer state, full-state-dict
checkpoints) runs on CPU tensors; only that device check stands in the way. This lifts it, so the tests exercise
aligntune under real FSDP2 sharding on a machine without GPUs. Without it, aligntune refuses an FSDP launch on CPU
(`aligntune.launch.check_sharding`), which a test checks too.
"""

import os

if os.environ.get("ACCELERATE_USE_FSDP", "").lower() == "true":
    from accelerate.state import AcceleratorState, PartialState
    from accelerate.utils import DistributedType

    _accelerator_state_init = AcceleratorState.__init__

    def _init_with_fsdp_on_cpu(self, *args, fsdp_plugin=None, **kwargs):
        _accelerator_state_init(self, *args, fsdp_plugin=fsdp_plugin, **kwargs)
        if self.distributed_type == DistributedType.MULTI_CPU and fsdp_plugin is not None:
            # Both shared states: AcceleratorState copies PartialState's distributed_type on every construction.
            PartialState._shared_state["distributed_type"] = DistributedType.FSDP
            self.distributed_type = DistributedType.FSDP
            self.fsdp_plugin = fsdp_plugin

    AcceleratorState.__init__ = _init_with_fsdp_on_cpu
