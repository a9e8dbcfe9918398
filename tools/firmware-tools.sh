#!/usr/bin/env bash
# The firmware step's tools (the Arm toolchain and QEMU), for `make demo`: installed with apt
# where this user may (root, or sudo without a password), else the one command to run is
# printed. Always exits 0: the firmware step then runs, or records why it could not.
set -u
packages=(gcc-arm-none-eabi libnewlib-arm-none-eabi libstdc++-arm-none-eabi-dev qemu-system-arm)
missing=()
for package in "${packages[@]}"; do
  dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
# Tools found on PATH count too (a toolchain installed another way, e.g. Arm's own download).
if command -v arm-none-eabi-gcc >/dev/null 2>&1 && command -v qemu-system-arm >/dev/null 2>&1; then
  exit 0
fi
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
command="apt-get install -y --no-install-recommends ${missing[*]}"
if ! command -v apt-get >/dev/null 2>&1; then
  echo "firmware: no apt-get here; install an Arm GNU toolchain (arm-none-eabi-gcc) and" \
    "qemu-system-arm yourself, then run: make demo" >&2
  exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
  sudo=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  sudo=(sudo -n)
else
  echo "firmware: the Arm toolchain and QEMU are missing; to build and run the firmware," \
    "run: sudo $command" >&2
  exit 0
fi
echo "firmware: installing ${missing[*]} (about 100 MB) with apt-get" >&2
if ! { "${sudo[@]}" apt-get update -qq &&
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null; }; then
  echo "firmware: apt-get could not install them; run: sudo $command" >&2
fi
exit 0
