"""Makes vLLM look absent in a child process even where it is installed: put tests/no_vllm first
on PYTHONPATH. A None entry in sys.modules is what importlib.util.find_spec reports as "not
found", so the up-front check (vllm_backend.backend.require_vllm) runs in CI too, where CI
installs vLLM."""
import sys

sys.modules["vllm"] = None
