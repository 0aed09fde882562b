#!/usr/bin/env bash
# Apache Kafka broker jars from Maven Central, copied into .cache/kafka/lib.
# The version is pinned in deploy/local/kafka/pom.xml.
source "$(dirname "$0")/common.sh"
need_apt java:openjdk-17-jre-headless mvn:maven
POM="$ROOT/deploy/local/kafka/pom.xml"
LIB="$CACHE/kafka/lib"
STAMP="$LIB/.pom.sha256"
want="$(sha256sum "$POM" | cut -d' ' -f1)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ]; then
  log "kafka jars cached"
  exit 0
fi
rm -rf "$LIB"; mkdir -p "$LIB"
log "fetching kafka jars with maven"
mvn -q -B -f "$POM" -Dmaven.repo.local="$CACHE/m2" dependency:copy-dependencies \
  -DoutputDirectory="$LIB" -DincludeScope=runtime
echo "$want" > "$STAMP"
log "kafka jars: $(ls "$LIB" | wc -l) files"
