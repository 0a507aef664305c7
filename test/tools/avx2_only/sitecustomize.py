# Emulate an AVX2-only CPU for a test run: with ATEN_CPU_CAPABILITY=avx2 torch uses its
# AVX2 kernels; this makes torch report no native bf16 (torch.cpu.get_capabilities without
# AVX-512-BF16 or AMX), patched when torch.cpu is first imported (torch itself is not imported here).
import importlib.abc
import sys
from types import MappingProxyType


class _Patch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "torch.cpu":
            return None
        for finder in sys.meta_path:
            if finder is self:
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                break
        else:
            return None
        exec_module = spec.loader.exec_module

        def patched(module):
            exec_module(module)
            detected = module.get_capabilities

            def get_capabilities():
                return MappingProxyType({**detected(), "avx512_bf16": False, "amx_bf16": False, "amx_tile": False})

            module.get_capabilities = get_capabilities

        spec.loader.exec_module = patched
        return spec


sys.meta_path.insert(0, _Patch())
