# Shared setup for the project's commands (sourced, not run).
# Sets PY (the venv's python), COMFYUI_DIR (the pinned host) and CONSTRAINTS (pins that keep torch).
COMFYUI_COMMIT=a125cd84b054a57729b5eecab930ca9408719832
VENV=${DYNAMICRAFTER_VENV:-$ROOT/.venv}
PY=$VENV/bin/python
CONSTRAINTS=$ROOT/.cache/constraints.txt

ensure_venv() {
  if [ ! -x "$PY" ]; then
    python3 -m venv "$VENV"
    "$PY" -m pip install -q --upgrade pip >&2
  fi
  mkdir -p "$ROOT/.cache"
  echo "torch==2.13.0" > "$CONSTRAINTS"
  "$PY" -c 'import torch' 2>/dev/null || "$PY" -m pip install -q torch==2.13.0 >&2
}

# The shared provisioning kit (snapshot + install.sh) lives beside the project when available.
shared_comfyui_kit() {
  local dir=$ROOT
  if [ -n "${DYNAMICRAFTER_SHARED:-}" ] && [ -f "$DYNAMICRAFTER_SHARED/comfyui/install.sh" ]; then
    echo "$DYNAMICRAFTER_SHARED/comfyui"; return 0
  fi
  while [ "$dir" != "/" ]; do
    dir=$(dirname "$dir")
    if [ -f "$dir/shared/comfyui/install.sh" ]; then echo "$dir/shared/comfyui"; return 0; fi
  done
  return 1
}

ensure_comfyui() {
  if [ -n "${COMFYUI_DIR:-}" ] && [ -f "$COMFYUI_DIR/main.py" ]; then
    "$PY" -m pip install -q -c "$CONSTRAINTS" -r "$COMFYUI_DIR/requirements.txt" >&2
    return 0
  fi
  COMFYUI_DIR=$ROOT/.cache/comfyui
  local kit
  if kit=$(shared_comfyui_kit); then
    bash "$kit/install.sh" "$PY" "$COMFYUI_DIR" >/dev/null
  else
    if [ "$(cat "$COMFYUI_DIR/.comfyui_commit" 2>/dev/null)" != "$COMFYUI_COMMIT" ]; then
      rm -rf "$COMFYUI_DIR"
      git clone -q https://github.com/Comfy-Org/ComfyUI "$COMFYUI_DIR"
      git -C "$COMFYUI_DIR" checkout -q "$COMFYUI_COMMIT"
      echo "$COMFYUI_COMMIT" > "$COMFYUI_DIR/.comfyui_commit"
    fi
    "$PY" -m pip install -q -c "$CONSTRAINTS" -r "$COMFYUI_DIR/requirements.txt" >&2
  fi
}
