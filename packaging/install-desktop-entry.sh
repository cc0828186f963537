#!/usr/bin/env bash
# Install the .desktop file and icon for the current user (after building dist/pruneviz).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
app="${1:-$here/dist/pruneviz/pruneviz}"
apps="${XDG_DATA_HOME:-$HOME/.local/share}/applications"
icons="${XDG_DATA_HOME:-$HOME/.local/share}/icons/hicolor/256x256/apps"
mkdir -p "$apps" "$icons"
cp "$here/resources/icons/pruneviz.png" "$icons/pruneviz.png"
sed "s|^Exec=pruneviz|Exec=$app|" "$here/packaging/pruneviz.desktop" > "$apps/pruneviz.desktop"
echo "installed $apps/pruneviz.desktop"
