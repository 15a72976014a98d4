#!/usr/bin/env bash
# Build dist/vantage_<version>_<arch>.deb: a self-contained virtualenv under /opt/vantage (agent and
# collector), systemd units, example configs. Needs: /usr/bin/python3 (>= 3.11) with venv, dpkg-deb,
# and access to PyPI for the dependencies. Usage: packaging/debian/build-deb.sh [WHEEL]
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$repo"
python=/usr/bin/python3
version="$("$python" -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')"
arch="$(dpkg --print-architecture)"
pyver="$("$python" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
mkdir -p dist
wheel="${1:-}"
if [ -z "$wheel" ]; then
    "$python" -m pip wheel --quiet --no-deps --wheel-dir dist . >/dev/null
    wheel="$(ls -t dist/vantagepoint-"$version"-*.whl | head -n1)"
fi

stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
venv="$stage/opt/vantage"
"$python" -m venv "$venv"
"$venv/bin/pip" install --quiet --no-cache-dir --no-compile --upgrade pip
"$venv/bin/pip" install --quiet --no-cache-dir --no-compile "$wheel[collector]"
"$venv/bin/pip" uninstall --quiet --yes pip
# The venv was built in a staging dir: point scripts and activation files at /opt/vantage.
grep -rlI --null "$venv" "$venv" | xargs -0 -r sed -i "s#$venv#/opt/vantage#g"
find "$venv" -name __pycache__ -type d -prune -exec rm -rf {} +

install -D -m 0644 packaging/systemd/vantage-agent.service "$stage/lib/systemd/system/vantage-agent.service"
install -D -m 0644 packaging/systemd/vantage-collector.service "$stage/lib/systemd/system/vantage-collector.service"
install -D -m 0644 packaging/examples/vantage-collector.default "$stage/etc/default/vantage-collector"
install -D -m 0644 packaging/examples/agent.toml "$stage/usr/share/doc/vantage/examples/agent.toml"
install -D -m 0644 packaging/nginx/vantage-collectors.conf "$stage/usr/share/doc/vantage/examples/nginx-vantage.conf"
install -D -m 0644 README.md "$stage/usr/share/doc/vantage/README.md"
mkdir -p "$stage/usr/bin"
ln -s /opt/vantage/bin/vantage "$stage/usr/bin/vantage"

mkdir -p "$stage/DEBIAN"
installed_size="$(du -sk "$stage" | cut -f1)"
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$installed_size/" \
    -e "s/@PYVER@/$pyver/" packaging/debian/control.in >"$stage/DEBIAN/control"
echo "/etc/default/vantage-collector" >"$stage/DEBIAN/conffiles"
for script in postinst prerm postrm; do
    install -m 0755 "packaging/debian/$script" "$stage/DEBIAN/$script"
done
out="dist/vantage_${version}_${arch}.deb"
dpkg-deb --root-owner-group -Zxz --build "$stage" "$out" >/dev/null
echo "$out"
