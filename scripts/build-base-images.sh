#!/usr/bin/env bash
#! Owns Berth's offline base images: builds them from Debian packages and tags them under
#! the local name berth/*, because no container registry is reachable on these machines
#! (see /work/shared/MACHINE-NOTES.md and DESIGN.md, "Running here without a container
#! registry"). Examples and tests build FROM these images; Berth's pull policy ("use the
#! local image if present, else pull") then never needs a registry.
#!
#!   berth/busybox:1      static busybox, /etc/passwd with root and nobody, /tmp 1777
#!   berth/postgres:15    } only with --with-databases (Debian bookworm packages copied
#!   berth/mariadb:10.11  } with their libraries into otherwise empty trees)
#!   berth/redis:7.0      }
#!
#! Idempotent and fast when nothing changed: each image carries the label
#! berth.base-recipe=<sha256 of its recipe and inputs>; an image whose label matches is
#! left alone, a changed recipe (or a new busybox binary) rebuilds it.
#!
#! The images carry NO berth.managed-by label on purpose: Docker copies an image's labels
#! into every image built from it and every container run from it, and that label is how
#! Berth recognises what it owns (and may delete).
#!
#! Usage: scripts/build-base-images.sh [--with-databases] [--force]
set -euo pipefail

# The docker.io client lives in /usr/bin; /usr/local/bin/docker (when present) is a newer
# client that cannot talk to the 20.10 engine's BuildKit. BERTH_DOCKER overrides it.
DOCKER=${BERTH_DOCKER:-/usr/bin/docker}
RECIPE_LABEL=berth.base-recipe
# Bump to force every image to rebuild when something outside the recipe functions
# changes their meaning.
RECIPE_VERSION=1

WITH_DATABASES=0
FORCE=0

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'build-base-images.sh: %s\n' "$*" >&2; exit 1; }

usage() {
  cat <<'EOF'
Usage: scripts/build-base-images.sh [--with-databases] [--force]

Builds Berth's offline base images from Debian packages (no registry needed):
  berth/busybox:1        always
  berth/postgres:15      with --with-databases
  berth/mariadb:10.11    with --with-databases
  berth/redis:7.0        with --with-databases

  --with-databases  also build the database server images (needs root for mmdebstrap)
  --force           rebuild even when an image with the same recipe exists
  -h, --help        this text

Prints one line per image: name, size, and whether it was built or already present.
EOF
}

while [ "$#" -gt 0 ]; do
  case "$1" in
    --with-databases) WITH_DATABASES=1 ;;
    --force) FORCE=1 ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
  shift
done

[ -x "$DOCKER" ] || die "$DOCKER not found (run scripts/setup-host.sh first)"
"$DOCKER" version >/dev/null 2>&1 || die "the Docker engine does not answer (run scripts/setup-host.sh first)"

# Tests may run this script from several processes at once; one builds, the others wait
# and then find the images present.
LOCK_FILE=${TMPDIR:-/tmp}/berth-build-base-images.lock
exec 9>"$LOCK_FILE"
flock 9

WORK_DIR=$(mktemp -d "${TMPDIR:-/tmp}/berth-base-images.XXXXXX")
cleanup() { rm -rf -- "$WORK_DIR"; }
trap cleanup EXIT

# ---------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------

# Installs the named Debian packages that are missing. Only root can; otherwise say what
# to install rather than failing halfway through a build.
ensure_packages() {
  local missing=() pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  [ "$(id -u)" -eq 0 ] || die "missing Debian packages (install as root): ${missing[*]}"
  log "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# Prints the recipe hash of an image: the source of the functions that build it plus the
# content of any input files, so editing a recipe or upgrading a package rebuilds.
#   recipe_hash FUNCTION... -- FILE...
recipe_hash() {
  local -a functions=() files=()
  while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do functions+=("$1"); shift; done
  [ "$#" -gt 0 ] && shift
  files=("$@")
  {
    printf 'recipe-version %s\n' "$RECIPE_VERSION"
    local f
    for f in "${functions[@]}"; do declare -f "$f"; done
    if [ "${#files[@]}" -gt 0 ]; then sha256sum -- "${files[@]}"; fi
  } | sha256sum | cut -d' ' -f1
}

# The recipe label of an existing image, or nothing when the image does not exist.
image_recipe() {
  "$DOCKER" image inspect --format "{{index .Config.Labels \"$RECIPE_LABEL\"}}" "$1" 2>/dev/null || true
}

image_id() {
  "$DOCKER" image inspect --format '{{.Id}}' "$1" 2>/dev/null || true
}

# True when IMAGE exists with recipe HASH (and --force was not given).
image_is_current() {
  [ "$FORCE" -eq 0 ] && [ "$(image_recipe "$1")" = "$2" ]
}

# After re-tagging, the previous image is untagged. Remove it when nothing uses it; when
# containers or derived images still do, Docker refuses and the old image stays for them.
remove_replaced_image() {
  local old_id=$1 name=$2
  [ -n "$old_id" ] || return 0
  [ "$old_id" = "$(image_id "$name")" ] && return 0
  "$DOCKER" image rm "$old_id" >/dev/null 2>&1 || true
}

# One line per image: name, size, what happened.
report() {
  local name=$1 status=$2 bytes
  bytes=$("$DOCKER" image inspect --format '{{.Size}}' "$name")
  printf '%-22s %7s  %s\n' "$name" "$(awk -v b="$bytes" 'BEGIN { printf "%.1fMB", b / 1000000 }')" "$status"
}

# Imports a root tree as IMAGE with the given `docker import --change` instructions and
# the recipe label. The tree is archived with numeric root ownership so the image does
# not depend on the build user's names.
import_tree() {
  local root=$1 name=$2 hash=$3
  shift 3
  local -a changes=(--change "LABEL $RECIPE_LABEL=$hash")
  local change
  for change in "$@"; do changes+=(--change "$change"); done
  tar -C "$root" --numeric-owner --owner=0 --group=0 -c . |
    "$DOCKER" import "${changes[@]}" - "$name" >/dev/null
}

# Builds IMAGE with FUNCTION unless it is current; reports either way.
#   ensure_image NAME HASH FUNCTION
ensure_image() {
  local name=$1 hash=$2 build=$3 old_id started elapsed
  if image_is_current "$name" "$hash"; then
    report "$name" "already present"
    return 0
  fi
  old_id=$(image_id "$name")
  started=$(date +%s.%N)
  "$build" "$name" "$hash"
  elapsed=$(awk -v s="$started" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
  remove_replaced_image "$old_id" "$name"
  report "$name" "built in ${elapsed}s"
}

# ---------------------------------------------------------------------------------------
# berth/busybox:1
# ---------------------------------------------------------------------------------------

BUSYBOX_IMAGE=berth/busybox:1
# busybox-static installs /bin/busybox (it conflicts with the dynamically linked
# `busybox` package, so this is the static binary when the package is installed).
BUSYBOX_BIN=/bin/busybox

# Fills ROOT with a minimal busybox userland. Shared by the database images, whose
# entrypoint scripts need a shell.
populate_busybox_tree() {
  local root=$1 applet
  mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,usr/local/bin,etc,root,tmp,var/tmp,home,proc,sys,dev}
  install -m 0755 "$BUSYBOX_BIN" "$root/bin/busybox"
  # The applet links `busybox --install -s` would make if run inside the image. It is not
  # run here because it links to the absolute path of the running binary (read from
  # /proc/self/exe), which would be a host path; --list-full gives the same set.
  while IFS= read -r applet; do
    case "$applet" in bin/busybox | linuxrc) continue ;; esac
    [ -e "$root/$applet" ] || [ -L "$root/$applet" ] || ln -s /bin/busybox "$root/$applet"
  done < <("$BUSYBOX_BIN" --list-full)
  chmod 0700 "$root/root"
  chmod 1777 "$root/tmp" "$root/var/tmp"
  # root and nobody (65534, Debian's numbering) so Dockerfiles can say `USER nobody`;
  # `nogroup` too because Debian-style Dockerfiles write `USER nobody:nogroup`.
  printf '%s\n' \
    'root:x:0:0:root:/root:/bin/sh' \
    'nobody:x:65534:65534:nobody:/nonexistent:/bin/false' >"$root/etc/passwd"
  printf '%s\n' \
    'root:x:0:' \
    'nobody:x:65534:' \
    'nogroup:x:65534:' >"$root/etc/group"
  chmod 0644 "$root/etc/passwd" "$root/etc/group"
}

build_busybox_image() {
  local name=$1 hash=$2 root="$WORK_DIR/busybox"
  populate_busybox_tree "$root"
  # PATH is set explicitly so RUN steps and `docker exec` see the same search path
  # whatever the engine's default is.
  import_tree "$root" "$name" "$hash" \
    'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    'CMD ["sh"]'
}

image_busybox() {
  ensure_packages busybox-static
  ensure_image "$BUSYBOX_IMAGE" \
    "$(recipe_hash populate_busybox_tree build_busybox_image import_tree -- "$BUSYBOX_BIN")" \
    build_busybox_image
}

# ---------------------------------------------------------------------------------------
# Database images (only with --with-databases)
# ---------------------------------------------------------------------------------------

image_postgres() {
  die "berth/postgres:15 is not implemented yet"
}

image_mariadb() {
  die "berth/mariadb:10.11 is not implemented yet"
}

image_redis() {
  die "berth/redis:7.0 is not implemented yet"
}

# ---------------------------------------------------------------------------------------

image_busybox
if [ "$WITH_DATABASES" -eq 1 ]; then
  image_postgres
  image_mariadb
  image_redis
fi
