#!/usr/bin/env bash
# Builds the controller image without a container engine, reproducibly (make image):
#   layer 1  Debian bookworm runtime: the packages pinned in deploy/image/debs.lock, /etc/passwd with
#            root and nonroot (65532), /tmp, /home/nonroot, /etc/ssl/certs/ca-certificates.crt
#   layer 2  the pinned Node (scripts/ensure-node.sh) at /usr/local/bin/node
#   layer 3  the app at /app: dist/ (compiled here), bin/, crds/, examples/, production node_modules
# assembled with crane (scripts/ensure-crane.sh) into a tarball that `docker load`, `kind load
# image-archive`, `ctr images import` and `crane push` all read:
#   .build/image/switchyard-<version>.tar     tagged $IMAGE_REPO:<version>
#   .build/image/digest                       the manifest digest
# Every file gets the mtime SOURCE_DATE_EPOCH (default: the last commit's time), owner 0:0 (65532 for
# /home/nonroot), and entries are sorted, so the same commit gives the same digest on any machine.
# deploy/Dockerfile builds the same file tree with Docker; keep the two in step.
set -euo pipefail
umask 022
export LC_ALL=C TZ=UTC

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
CACHE="${SWITCHYARD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/switchyard}"
OUT="${IMAGE_OUT:-$root/.build/image}"
IMAGE_REPO="${IMAGE_REPO:-ghcr.io/switchyard-dev/switchyard}"
VERSION="$(sed -n 's/^  "version": "\(.*\)",$/\1/p' package.json | head -1)"
IMAGE_TAG="${IMAGE_TAG:-$VERSION}"
SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-$(git -C "$root" log -1 --format=%ct 2>/dev/null || echo 0)}"
export SOURCE_DATE_EPOCH
REVISION="$(git -C "$root" rev-parse HEAD 2>/dev/null || echo unknown)"
# Uncommitted changes to what goes into the image make it no longer that commit's.
git -C "$root" diff --quiet HEAD -- src bin crds examples package.json package-lock.json tsconfig.json \
  tsconfig.build.json deploy/image 2>/dev/null || REVISION="$REVISION-dirty"

say() { echo "image: $*" >&2; }
die() { echo "image: $*" >&2; exit 1; }
t0=$SECONDS
[ -n "$VERSION" ] || die "cannot read the version from package.json"
[ "$(uname -m)" = x86_64 ] || die "the image is linux/amd64 (deploy/image/debs.lock pins amd64 packages); build it on x86_64"
for t in dpkg-deb sha256sum curl tar; do command -v "$t" >/dev/null || die "$t is required"; done

node_bin="$(readlink -f "$(scripts/ensure-node.sh)")"
node_dir="$(dirname "$(dirname "$node_bin")")"
crane="$(scripts/ensure-crane.sh)"
export PATH="$root/.toolchain/bin:$PATH"

work="$OUT/work"
rm -rf "$work"
mkdir -p "$work" "$CACHE/debs"

# ---- layer 1: Debian runtime -----------------------------------------------------------------
base="$work/base"
mkdir -p "$base/var/lib/dpkg/status.d"
while read -r pkg version archive file sha; do
  case "$pkg" in ''|'#'*) continue ;; esac
  deb="$CACHE/debs/$(basename "$file")"
  if ! echo "$sha  $deb" | sha256sum -c --status 2>/dev/null; then
    say "downloading $pkg $version"
    curl -fsSL --retry 3 -o "$deb.tmp" "$archive/$file" ||
      die "$pkg $version: cannot download $archive/$file (a superseded security update leaves the archive: pin the current version in deploy/image/debs.lock)"
    echo "$sha  $deb.tmp" | sha256sum -c --status || die "$pkg $version: SHA-256 of $archive/$file is not the one in deploy/image/debs.lock"
    mv "$deb.tmp" "$deb"
  fi
  dpkg-deb -x "$deb" "$base"
  # What image scanners read to list the packages (the layout distroless images use).
  dpkg-deb -f "$deb" > "$base/var/lib/dpkg/status.d/$pkg"
  [ "$(dpkg-deb -f "$deb" Version)" = "$version" ] || die "$pkg: $deb is not version $version"
done < deploy/image/debs.lock
# Documentation goes, the licences stay.
find "$base/usr/share/doc" -mindepth 2 ! -name copyright ! -type d -delete
find "$base/usr/share/doc" -mindepth 1 -type d -empty -delete
rm -rf "$base/usr/share/lintian" "$base/usr/share/man" "$base/usr/share/info"
# ca-certificates' postinst would build the bundle; no shell runs in the image, so build it here,
# in update-ca-certificates' order (the certificates listed by name).
mkdir -p "$base/etc/ssl/certs"
(cd "$base/usr/share/ca-certificates" && find . -name '*.crt' -printf '%P\n' | sort |
  while read -r c; do cat "$c"; done) > "$base/etc/ssl/certs/ca-certificates.crt"
[ -s "$base/etc/ssl/certs/ca-certificates.crt" ] || die "no certificates in ca-certificates"
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > "$base/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' > "$base/etc/group"
printf 'hosts: files dns\n' > "$base/etc/nsswitch.conf"
printf 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nNAME="Debian GNU/Linux"\nVERSION_ID="12"\nVERSION="12 (bookworm)"\nVERSION_CODENAME=bookworm\nID=debian\n' > "$base/etc/os-release"
mkdir -p "$base/tmp" "$base/root" "$base/home/nonroot"
chmod 1777 "$base/tmp"; chmod 700 "$base/root" "$base/home/nonroot"

# ---- layer 2: Node ---------------------------------------------------------------------------
nodefs="$work/node"
mkdir -p "$nodefs/usr/local/bin" "$nodefs/usr/local/share/doc/node"
cp "$node_bin" "$nodefs/usr/local/bin/node"
cp "$node_dir/LICENSE" "$nodefs/usr/local/share/doc/node/LICENSE"

# ---- layer 3: the app ------------------------------------------------------------------------
app="$work/app/app"
mkdir -p "$app"
say "compiling src/ -> /app/dist"
# At a fixed place beside src/, whatever OUT is: the source maps hold the path back to src/.
rm -rf .build/dist
npx tsc -p tsconfig.build.json --outDir .build/dist
node scripts/gen-envoy-protos.mjs .build/dist
cp -r .build/dist "$app/dist"
rm -rf .build/dist
cp -r bin crds examples package.json package-lock.json "$app/"
say "installing production node_modules"
# In the staging copy only: the work tree's node_modules may be another checkout's (a symlink).
(cd "$app" && npm ci --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null) ||
  die "npm ci --omit=dev failed in $app"
[ -f "$app/node_modules/zod/package.json" ] || die "production node_modules incomplete in $app"

# ---- tar layers: sorted, fixed mtimes, numeric owners ----------------------------------------
layer() { # layer DIR OUT.tar [PATH...]: DIR's contents, owned by 0:0 except PATHs (65532:65532)
  local dir="$1" out="$2"; shift 2
  local flags=(--format=pax --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime
    --mtime="@$SOURCE_DATE_EPOCH" --numeric-owner --no-recursion -C "$dir")
  (cd "$dir" && find . -mindepth 1 -printf '%P\n' | sort) |
    { if [ $# -gt 0 ]; then grep -vxF -f <(printf '%s\n' "$@"); else cat; fi; } > "$out.list"
  tar "${flags[@]}" --owner=0 --group=0 -cf "$out" -T "$out.list"
  [ $# -eq 0 ] || tar "${flags[@]}" --owner=65532 --group=65532 -rf "$out" "$@"
  rm -f "$out.list"
}
layer "$base" "$work/base.tar" home/nonroot
layer "$nodefs" "$work/node.tar"
layer "$work/app" "$work/app.tar"

# ---- assemble: crane against a registry in this process group, on loopback -------------------
"$crane" registry serve --address 127.0.0.1:0 2> "$work/registry.log" &
reg_pid=$!
trap 'kill "$reg_pid" 2>/dev/null || true' EXIT
port=""
for _ in $(seq 1 100); do
  port="$(sed -n 's/.*serving on port \([0-9]*\).*/\1/p' "$work/registry.log")"
  [ -n "$port" ] && break
  sleep 0.1
done
[ -n "$port" ] || die "crane registry did not start: $(cat "$work/registry.log")"
local_ref="127.0.0.1:$port/switchyard:build"
"$crane" append --oci-empty-base -f "$work/base.tar" -f "$work/node.tar" -f "$work/app.tar" -t "$local_ref" >/dev/null 2>"$work/crane.log" || die "crane append failed: $(cat "$work/crane.log")"
created="$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)"
mkdir -p "$OUT"
tarball="$OUT/switchyard-$IMAGE_TAG.tar"
"$crane" mutate "$local_ref" \
  --set-platform linux/amd64 \
  --entrypoint node,/app/bin/switchyard.js --cmd controller \
  --user 65532:65532 --workdir /app \
  -e PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  -e NODE_ENV=production \
  --exposed-ports 18000/tcp,9090/tcp \
  -l org.opencontainers.image.title=switchyard \
  -l "org.opencontainers.image.version=$VERSION" \
  -l "org.opencontainers.image.revision=$REVISION" \
  -l "org.opencontainers.image.created=$created" \
  -l org.opencontainers.image.licenses=Apache-2.0 \
  -l org.opencontainers.image.source=https://github.com/switchyard-dev/switchyard \
  -t "$IMAGE_REPO:$IMAGE_TAG" -o "$tarball.tmp" >/dev/null
mv "$tarball.tmp" "$tarball"
digest="$("$crane" digest --tarball "$tarball")"
echo "$digest" > "$OUT/digest"
echo "$IMAGE_REPO:$IMAGE_TAG" > "$OUT/ref"
rm -rf "$work"
say "$IMAGE_REPO:$IMAGE_TAG $digest, $(du -m "$tarball" | cut -f1) MB -> ${tarball#"$root"/} in $((SECONDS - t0))s"
echo "$tarball"
