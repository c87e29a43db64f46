# The pack's own setup steps for the project's commands (sourced after env.sh, not run).

# Installs requirements.txt into the venv (with the torch pin) when it changed since the last install.
ensure_pack_requirements() {
  local stamp="$VENV/.dynamicrafter-requirements"
  local want
  want=$(cat "$ROOT/requirements.txt" "$CONSTRAINTS" | sha256sum | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    stage "installing the pack's requirements into $VENV"
    "$PY" -m pip install -q -c "$CONSTRAINTS" -r "$ROOT/requirements.txt" >&2
    echo "$want" > "$stamp"
  fi
}
