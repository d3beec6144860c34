#!/usr/bin/env bash
# Stand-in base images for the images tier (tests/images), on a machine that reaches no image registry:
# made locally with podman and tagged with exactly the names in the FROM lines of images/*/Dockerfile,
# so those Dockerfiles build unchanged. docs/images.md lists how each stand-in differs from the real base.
#
#   python:<3.11.x>-slim-trixie       Debian bookworm (debootstrap, minbase) + Debian's python3.11 + venv
#   maven:<M>-eclipse-temurin-17      Debian bookworm + Debian's OpenJDK 17 JDK + Apache Maven <M> (Maven Central)
#   apache/spark:<S>-scala2.13-java17-python3-ubuntu
#                                     Debian bookworm + Debian's OpenJDK 17 JRE + python3 + Spark <S> laid out
#                                     as /opt/spark from the pyspark <S> distribution on PyPI; user spark (185)
#
# Every stand-in trusts what the host trusts for TLS (the host's CA bundle, and its Java trust store
# when it has one) so that pip and mvn inside a build work behind the same network as the host.
#
# Cached: the images live in podman's storage under .cache/podman (scripts/podman-env.sh); the
# downloads (Maven, pyspark, py4j) under .cache/image-bases/downloads. Idempotent: when the stamp
# (.cache/image-bases/.stamp: the inputs' digest) matches and the three images exist, it does nothing.
# Cold on 2 cores: ~4-5 min (debootstrap ~1 min, three apt layers, Spark's 450 MB of jars).
#
# Environment:
#   IMAGE_BASES=real   do nothing: the builds pull the real bases (a machine with registry access)
#   IMAGE_BASES_DIR    stamp, downloads and build context (default <repo>/.cache/image-bases)
#   PODMAN_ROOT        podman's storage and configuration (scripts/podman-env.sh; default <repo>/.cache/podman)
#   FORCE=1            rebuild even when the stamp matches
#   DEBIAN_MIRROR      default http://deb.debian.org/debian
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${IMAGE_BASES_DIR:-$ROOT/.cache/image-bases}"
DL="$OUT/downloads"
STAMP="$OUT/.stamp"
SUITE=bookworm
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
BASE_TAG=localhost/marketing-engine/stand-in-debian:$SUITE
LABEL=io.marketing-engine.stand-in
HOST_CA=/etc/ssl/certs/ca-certificates.crt
HOST_JAVA_CA=/etc/ssl/certs/java/cacerts

log() { printf 'image-bases: %s\n' "$*"; }
die() { printf 'image-bases: ERROR: %s\n' "$*" >&2; exit 1; }

if [[ "${IMAGE_BASES:-stand-in}" == real ]]; then
    log "IMAGE_BASES=real: no stand-ins; the builds use the real bases from the registry"
    exit 0
fi

# --- the names: exactly the FROM lines of our Dockerfiles -------------------------------------
from_image() { # <Dockerfile> <n>: the image of the n-th FROM line (1-based)
    awk -v n="$2" 'toupper($1) == "FROM" { if (++i == n) { print $2; exit } }' "$1"
}
PYTHON_IMAGE="$(from_image "$ROOT/images/app/Dockerfile" 1)"
MAVEN_IMAGE="$(from_image "$ROOT/images/spark/Dockerfile" 1)"
SPARK_IMAGE="$(from_image "$ROOT/images/spark/Dockerfile" 2)"
[[ "$PYTHON_IMAGE" =~ ^python:(3\.[0-9]+)\.[0-9]+-slim ]] || die "images/app/Dockerfile: FROM '$PYTHON_IMAGE' is not python:3.X.Y-slim-*"
PYTHON_MINOR="${BASH_REMATCH[1]}"
[[ "$MAVEN_IMAGE" =~ ^maven:([0-9]+\.[0-9]+\.[0-9]+)-eclipse-temurin-17$ ]] \
    || die "images/spark/Dockerfile: first FROM '$MAVEN_IMAGE' is not maven:X.Y.Z-eclipse-temurin-17"
MAVEN_VERSION="${BASH_REMATCH[1]}"
[[ "$SPARK_IMAGE" =~ ^apache/spark:([0-9]+\.[0-9]+\.[0-9]+)-scala2\.13-java17-python3 ]] \
    || die "images/spark/Dockerfile: second FROM '$SPARK_IMAGE' is not apache/spark:X.Y.Z-scala2.13-java17-python3-*"
SPARK_VERSION="${BASH_REMATCH[1]}"
# Debian bookworm ships 3.11 as its python3; another minor has no Debian package to stand in with.
[[ "$PYTHON_MINOR" == 3.11 ]] || die "$PYTHON_IMAGE: the stand-in has Debian $SUITE's python3.11 only, not $PYTHON_MINOR"

eval "$("$ROOT/scripts/podman-env.sh" --export)"
command -v podman >/dev/null || die "podman not found (apt-get install podman runc; .ci/run installs it)"

# The Debian base alone: rebuilt only when its own inputs change (bump BASE_REVISION with its recipe).
BASE_REVISION=1
BASE_KEY="$( { echo "$BASE_REVISION $SUITE $MIRROR"; cat "$HOST_CA"; } | sha256sum | cut -c1-16)"

# The digest of everything a stand-in is made of: a change rebuilds them.
host_java_ca_sum="none"
[[ -f "$HOST_JAVA_CA" ]] && host_java_ca_sum="$(sha256sum < "$HOST_JAVA_CA" | cut -c1-16)"
KEY="$( { cat "${BASH_SOURCE[0]}" "$ROOT/scripts/image-bases-spark-entrypoint.sh"; echo "$BASE_KEY $PYTHON_IMAGE $MAVEN_IMAGE $SPARK_IMAGE $SUITE $MIRROR $host_java_ca_sum";
          cat "$HOST_CA"; } | sha256sum | cut -c1-16)"

has_image() { # <tag> [key]: exists and was made from these inputs
    [[ "$(podman image inspect --format "{{ index .Labels \"$LABEL\" }}" "$1" 2>/dev/null)" == "${2:-$KEY}" ]]
}
all_present() { has_image "docker.io/library/$PYTHON_IMAGE" && has_image "docker.io/library/$MAVEN_IMAGE" \
                && has_image "docker.io/$SPARK_IMAGE"; }

if [[ "${FORCE:-0}" != 1 && -f "$STAMP" && "$(cat "$STAMP")" == "$KEY" ]] && all_present; then
    log "up to date: $PYTHON_IMAGE, $MAVEN_IMAGE, $SPARK_IMAGE (stand-ins, $KEY)"
    exit 0
fi
command -v debootstrap >/dev/null || die "debootstrap not found (apt-get install debootstrap; .ci/run installs it)"
[[ $EUID -eq 0 ]] || die "run as root: debootstrap and rootful podman (Debian's podman 4.3) need it"
[[ -f "$HOST_CA" ]] || die "no CA bundle at $HOST_CA to copy into the stand-ins"
rm -f "$STAMP"
mkdir -p "$OUT" "$DL"
start=$SECONDS
build() { # <tag> <context dir>: Containerfile on stdin
    podman build --quiet --pull=never --network host --label "$LABEL=$KEY" -t "$1" -f - "$2" >/dev/null
}

# --- downloads, in the background while debootstrap runs ---------------------------------------
# Maven from Maven Central and pyspark/py4j from PyPI, through their own clients (checksums verified).
PY="$ROOT/.venv/bin/python"; [[ -x "$PY" ]] || PY=python3
maven_tgz="$DL/apache-maven-$MAVEN_VERSION-bin.tar.gz"
pyspark_tgz="$DL/pyspark-$SPARK_VERSION.tar.gz"
downloads() {
    if [[ ! -f "$maven_tgz" ]]; then
        mvn -q -B -Dmaven.repo.local="$ROOT/.cache/m2" dependency:copy \
            -Dartifact="org.apache.maven:apache-maven:$MAVEN_VERSION:tar.gz:bin" -DoutputDirectory="$DL" \
            || { echo "maven $MAVEN_VERSION from Maven Central failed"; return 1; }
    fi
    if [[ ! -f "$pyspark_tgz" ]]; then
        "$PY" -m pip download -q --no-deps "pyspark==$SPARK_VERSION" -d "$DL" \
            || { echo "pyspark $SPARK_VERSION from PyPI failed"; return 1; }
    fi
}
downloads > "$DL/.log" 2>&1 &
dl_pid=$!

# --- the Debian base: debootstrap (minbase) + apt sources + the host's trust ---------------------
if has_image "$BASE_TAG" "$BASE_KEY"; then
    log "[1/4] $BASE_TAG: cached"
else
    log "[1/4] debootstrap --variant=minbase $SUITE from $MIRROR"
    t=$SECONDS
    rootfs="$OUT/rootfs"
    rm -rf "$rootfs"
    debootstrap --variant=minbase --include=ca-certificates "$SUITE" "$rootfs" "$MIRROR" > "$OUT/debootstrap.log" 2>&1 \
        || { tail -20 "$OUT/debootstrap.log" >&2; die "debootstrap failed (log: $OUT/debootstrap.log)"; }
    cat > "$rootfs/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb ${MIRROR%/debian}/debian-security $SUITE-security main
EOF
    # As the Debian images do: no docs, man pages or apt caches in layers; never install recommends.
    cat > "$rootfs/etc/dpkg/dpkg.cfg.d/stand-in-excludes" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/info/*
EOF
    printf 'APT::Install-Recommends "false";\nAPT::Install-Suggests "false";\n' > "$rootfs/etc/apt/apt.conf.d/90stand-in"
    mkdir -p "$rootfs/usr/share/man/man1"   # openjdk's postinst registers man pages there
    # The host's trust: as the bundle, and as a local CA file so a later update-ca-certificates keeps it.
    cp "$HOST_CA" "$rootfs/usr/local/share/ca-certificates/host-trust.crt"
    cp "$HOST_CA" "$rootfs/etc/ssl/certs/ca-certificates.crt"
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* "$rootfs"/usr/share/doc/*/changelog* \
        "$rootfs"/usr/share/man/*/* "$rootfs"/usr/share/locale/*
    tar --numeric-owner -C "$rootfs" -c . | podman import --quiet \
        --change "LABEL $LABEL=$BASE_KEY" \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV LANG=C.UTF-8' \
        --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
        --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
        --change 'ENV REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt' \
        --change 'CMD ["bash"]' - "$BASE_TAG" >/dev/null
    rm -rf "$rootfs"
    log "      $BASE_TAG in $((SECONDS - t))s"
fi

# Debian's OpenJDK at the path of the Temurin images; the host's Java trust store when it has one.
ctx="$OUT/context"
rm -rf "$ctx" && mkdir -p "$ctx/spark"
if [[ -f "$HOST_JAVA_CA" ]]; then cp "$HOST_JAVA_CA" "$ctx/java-cacerts"; else : > "$ctx/java-cacerts"; fi
# shellcheck disable=SC2016  # expanded inside the build container
JDK_LAYOUT='ln -s "$(dirname "$(dirname "$(readlink -f /usr/bin/java)")")" /opt/java/openjdk \
    && if [ -s /tmp/java-cacerts ]; then cp /tmp/java-cacerts /etc/ssl/certs/java/cacerts; fi && rm -f /tmp/java-cacerts'

# --- python ---------------------------------------------------------------------------------------
t=$SECONDS
log "[2/4] $PYTHON_IMAGE: Debian's python$PYTHON_MINOR + venv"
build "docker.io/library/$PYTHON_IMAGE" "$ctx" <<EOF
FROM $BASE_TAG
RUN apt-get update -q && apt-get install -y -q python$PYTHON_MINOR python$PYTHON_MINOR-venv netbase tzdata >/dev/null \\
    && rm -rf /var/lib/apt/lists/* \\
    && ln -s /usr/bin/python$PYTHON_MINOR /usr/local/bin/python && ln -s /usr/bin/python$PYTHON_MINOR /usr/local/bin/python3
CMD ["python3"]
EOF
log "      in $((SECONDS - t))s"

wait "$dl_pid" || { cat "$DL/.log" >&2; die "downloads failed"; }

# --- maven ----------------------------------------------------------------------------------------
t=$SECONDS
log "[3/4] $MAVEN_IMAGE: Debian's OpenJDK 17 JDK + Maven $MAVEN_VERSION"
cp "$maven_tgz" "$ctx/maven.tar.gz"
build "docker.io/library/$MAVEN_IMAGE" "$ctx" <<EOF
FROM $BASE_TAG
COPY java-cacerts /tmp/java-cacerts
RUN apt-get update -q && apt-get install -y -q openjdk-17-jdk-headless >/dev/null && rm -rf /var/lib/apt/lists/* \\
    && mkdir -p /opt/java && $JDK_LAYOUT
ADD maven.tar.gz /usr/share/
RUN ln -s /usr/share/apache-maven-$MAVEN_VERSION /usr/share/maven && ln -s /usr/share/maven/bin/mvn /usr/bin/mvn
ENV JAVA_HOME=/opt/java/openjdk MAVEN_HOME=/usr/share/maven MAVEN_CONFIG=/root/.m2
CMD ["mvn"]
EOF
rm -f "$ctx/maven.tar.gz"
log "      in $((SECONDS - t))s"

# --- spark ----------------------------------------------------------------------------------------
t=$SECONDS
log "[4/4] $SPARK_IMAGE: Debian's OpenJDK 17 JRE + python3 + Spark $SPARK_VERSION from pyspark $SPARK_VERSION"
spark="$ctx/spark"
tar -xzf "$pyspark_tgz" -C "$spark" --strip-components=1 \
    "pyspark-$SPARK_VERSION/deps/bin" "pyspark-$SPARK_VERSION/deps/sbin" "pyspark-$SPARK_VERSION/deps/jars" \
    "pyspark-$SPARK_VERSION/pyspark"
mkdir -p "$spark/opt/spark/python/lib" "$spark/opt/spark/conf" "$spark/opt/spark/work-dir"
mv "$spark/deps/bin" "$spark/deps/sbin" "$spark/deps/jars" "$spark/opt/spark/"
mv "$spark/pyspark" "$spark/opt/spark/python/pyspark"
rm -rf "$spark/deps" "$spark/opt/spark/bin/"*.cmd
# spark-submit puts python/lib/pyspark.zip and the py4j zip its PythonUtils names on the driver's path.
"$PY" - "$spark/opt/spark" "$SPARK_VERSION" "$DL" <<'PYEOF'
import re, subprocess, sys, zipfile
from pathlib import Path
home, version, dl = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
with zipfile.ZipFile(home / "jars" / f"spark-core_2.13-{version}.jar") as jar:
    name = re.search(rb"py4j-[0-9.]+-src\.zip", jar.read("org/apache/spark/api/python/PythonUtils$.class")).group().decode()
py4j = name.removeprefix("py4j-").removesuffix("-src.zip")
wheel = dl / f"py4j-{py4j}-py2.py3-none-any.whl"
if not wheel.exists():
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", f"py4j=={py4j}", "-d", str(dl)], check=True)
with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(home / "python" / "lib" / name, "w", zipfile.ZIP_DEFLATED) as out:
    for item in src.infolist():
        if item.filename.startswith("py4j/"):
            out.writestr(item, src.read(item))
with zipfile.ZipFile(home / "python" / "lib" / "pyspark.zip", "w", zipfile.ZIP_DEFLATED) as out:
    for path in sorted((home / "python" / "pyspark").rglob("*")):  # code and its data (error-conditions.json)
        if path.is_file() and "__pycache__" not in path.parts:
            out.write(path, path.relative_to(home / "python"))
PYEOF
printf 'Spark %s (stand-in: the jars, bin and python of the pyspark %s distribution on PyPI)\n' \
    "$SPARK_VERSION" "$SPARK_VERSION" > "$spark/opt/spark/RELEASE"
cp "$ROOT/scripts/image-bases-spark-entrypoint.sh" "$spark/entrypoint.sh"
build "docker.io/$SPARK_IMAGE" "$ctx" <<EOF
FROM $BASE_TAG
COPY java-cacerts /tmp/java-cacerts
RUN apt-get update -q && apt-get install -y -q openjdk-17-jre-headless python3 procps tini >/dev/null \\
    && rm -rf /var/lib/apt/lists/* \\
    && mkdir -p /opt/java && $JDK_LAYOUT \\
    && groupadd --system --gid=185 spark && useradd --system --uid=185 --gid=spark spark
COPY spark/opt/spark /opt/spark
COPY spark/entrypoint.sh /opt/entrypoint.sh
RUN chmod a+x /opt/entrypoint.sh && chmod g+w /opt/spark/work-dir
ENV JAVA_HOME=/opt/java/openjdk SPARK_HOME=/opt/spark
ENV PATH=/opt/java/openjdk/bin:\$PATH
WORKDIR /opt/spark/work-dir
USER spark
ENTRYPOINT ["/opt/entrypoint.sh"]
EOF
rm -rf "$ctx"
log "      in $((SECONDS - t))s"

all_present || die "a stand-in is missing after the build"
printf '%s\n' "$KEY" > "$STAMP"
podman image prune --force >/dev/null 2>&1 || true
log "done in $((SECONDS - start))s: $(podman images --format '{{.Repository}}:{{.Tag}} {{.Size}}' \
    | grep -E "library/python|library/maven|apache/spark" | tr '\n' ';' | sed 's/;$//; s/;/, /g')"
