# Sourced by the prepared device checks (gpu_check.sh, gpu_grid_check.sh): strict mode, the repository
# root as the working folder, $out (the device tool's $OUT, else .), $py (the project's venv, else
# python3), and a stop with one line where no CUDA device is visible.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out="${OUT:-.}"
py="${PYTHON:-.venv/bin/python}"
[ -x "$py" ] || py=python3
"$py" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no CUDA device: nothing to measure')"
