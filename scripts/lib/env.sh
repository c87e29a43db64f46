# Shared setup for the project's commands (sourced, not run; needs ROOT).
#
# A host is one ComfyUI release with its own virtual environment:
#   use_host VERSION   sets HOST_VERSION, VENV, PY, COMFYUI_DIR and CONSTRAINTS for that release
#   ensure_venv        creates VENV with CPU torch 2.13.0 when missing
#   ensure_comfyui     provisions COMFYUI_DIR and its requirements into VENV
# ComfyUI comes from the provisioning kit beside the project (../shared/comfyui, or $DYNAMICRAFTER_SHARED/comfyui)
# when there is one, else from a shallow git clone of upstream at the release's tag. COMFYUI_DIR, when set
# to an existing install, is used as it is (its requirements are installed into VENV).

# The newest release the tests know: the default host of scripts/test and scripts/run. When a newer
# release is added to the kit, change this line (and its commit below).
COMFYUI_NEWEST=0.33.0
# The oldest release [tool.comfy] requires-comfyui claims; scripts/test runs the server tests on it too.
COMFYUI_OLDEST=0.8.0
COMFYUI_UPSTREAM=https://github.com/comfyanonymous/ComfyUI

# The upstream commit of each release (what a git clone checks out; the kit's archives are the same trees).
comfyui_commit() {
  case "$1" in
    0.33.0) echo 2f35f4a08176d993cded35dac3332be4f7287f41 ;;
    0.8.0) echo fc0cb10bcbee6e73ed3caf34c27f7bde4559a07f ;;
    *) echo "unknown ComfyUI release '$1' (known: $COMFYUI_NEWEST, $COMFYUI_OLDEST)" >&2; return 2 ;;
  esac
}

# Seconds since the command started, for the stage lines.
STARTED_AT=${STARTED_AT:-$(date +%s)}
stage() { echo "[$(( $(date +%s) - STARTED_AT ))s] $*" >&2; }

use_host() {
  HOST_VERSION=$1
  comfyui_commit "$HOST_VERSION" >/dev/null || return 2
  if [ "$HOST_VERSION" = "$COMFYUI_NEWEST" ]; then
    VENV=${DYNAMICRAFTER_VENV:-$ROOT/.venv}
  else
    VENV=${DYNAMICRAFTER_VENV:-$ROOT/.venv-comfyui-$HOST_VERSION}
  fi
  PY=$VENV/bin/python
  COMFYUI_DIR=${COMFYUI_DIR_OVERRIDE:-$ROOT/.cache/comfyui-$HOST_VERSION}
  CONSTRAINTS=$ROOT/.cache/constraints.txt
}

ensure_venv() {
  local template=$ROOT/.venv
  if [ ! -x "$PY" ] && [ "$VENV" != "$template" ] && [ -x "$template/bin/python" ]; then
    # Another release's environment starts as a copy of the default one: ensure_comfyui then switches only
    # the packages whose pins differ (minutes less than installing everything again). The commands here
    # always run "$PY" -m ..., so the copied console scripts' first lines do not matter.
    stage "copying $template to $VENV (then switched to ComfyUI $HOST_VERSION's pins)"
    cp -a "$template" "$VENV"
  fi
  if [ ! -x "$PY" ]; then
    stage "creating the virtual environment $VENV"
    python3 -m venv "$VENV"
    "$PY" -m pip install -q --upgrade pip >&2
  fi
  mkdir -p "$ROOT/.cache"
  echo "torch==2.13.0" > "$CONSTRAINTS"
  if ! "$PY" -c 'import torch' 2>/dev/null; then
    stage "installing torch 2.13.0 into $VENV"
    "$PY" -m pip install -q torch==2.13.0 >&2
  fi
}

# The provisioning kit (release archives + install.sh) beside the project, when there is one.
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
  local commit kit
  commit=$(comfyui_commit "$HOST_VERSION")
  if [ -n "${COMFYUI_DIR_OVERRIDE:-}" ]; then
    [ -f "$COMFYUI_DIR/main.py" ] || { echo "COMFYUI_DIR=$COMFYUI_DIR holds no ComfyUI (no main.py)" >&2; return 2; }
    stage "using the ComfyUI in $COMFYUI_DIR; installing its requirements"
    "$PY" -m pip install -q -c "$CONSTRAINTS" -r "$COMFYUI_DIR/requirements.txt" >&2
    return 0
  fi
  if kit=$(shared_comfyui_kit); then
    stage "ComfyUI $HOST_VERSION from the kit ($kit) into $COMFYUI_DIR"
    bash "$kit/install.sh" "$PY" "$COMFYUI_DIR" "$HOST_VERSION" >/dev/null
    return 0
  fi
  if [ "$(cat "$COMFYUI_DIR/.comfyui_commit" 2>/dev/null)" != "$commit" ]; then
    stage "ComfyUI $HOST_VERSION: git clone of $COMFYUI_UPSTREAM at v$HOST_VERSION into $COMFYUI_DIR"
    rm -rf "$COMFYUI_DIR"
    git clone -q --depth 1 --branch "v$HOST_VERSION" "$COMFYUI_UPSTREAM" "$COMFYUI_DIR"
    local got
    got=$(git -C "$COMFYUI_DIR" rev-parse HEAD)
    if [ "$got" != "$commit" ]; then
      echo "ComfyUI tag v$HOST_VERSION is commit $got, expected $commit: refusing an unknown tree" >&2
      rm -rf "$COMFYUI_DIR"; return 2
    fi
    echo "$commit" > "$COMFYUI_DIR/.comfyui_commit"
  fi
  local stamp="$VENV/.comfyui_requirements"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$commit" ]; then
    stage "installing ComfyUI $HOST_VERSION's requirements into $VENV"
    grep -vE '^(torch|torchvision|torchaudio)[[:space:]]*$' "$COMFYUI_DIR/requirements.txt" > "$COMFYUI_DIR/.requirements-notorch.txt"
    "$PY" -m pip install -q -c "$CONSTRAINTS" -r "$COMFYUI_DIR/.requirements-notorch.txt" >&2
    "$PY" -m pip install -q -c "$CONSTRAINTS" torchvision torchaudio >&2
    echo "$commit" > "$stamp"
  fi
}

# An existing ComfyUI named by the caller replaces the provisioned one (any release).
if [ -n "${COMFYUI_DIR:-}" ] && [ -z "${COMFYUI_DIR_OVERRIDE:-}" ]; then
  COMFYUI_DIR_OVERRIDE=$COMFYUI_DIR
fi
