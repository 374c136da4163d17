#!/usr/bin/env bash
# Builds the listener with build.sh, then compiles and runs its unit tests (JUnit 5, from
# Debian's junit5 package) against the same Spark jars.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here"
bash build.sh >/dev/null
if [[ -z "${SPARK_HOME:-}" ]]; then
    python=python3
    [[ -x ../.venv/bin/python ]] && python=../.venv/bin/python
    SPARK_HOME="$("$python" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')"
fi
junit=/usr/share/java/junit-platform-console-standalone.jar
[[ -f $junit ]] || { echo "test.sh: $junit not found (Debian package junit5)" >&2; exit 1; }

classes="target/test-classes"
rm -rf "$classes" target/test-tls
mkdir -p "$classes" target/test-tls
# Two self-signed certificates for 127.0.0.1: the fake agent's, and one the listener must reject.
for name in agent other; do
    keytool -genkeypair -alias "$name" -keyalg EC -groupname secp256r1 -validity 2 \
        -dname "CN=$name" -ext "SAN=ip:127.0.0.1,dns:localhost" -storetype PKCS12 \
        -keystore "target/test-tls/$name.p12" -storepass changeit -keypass changeit >/dev/null 2>&1
    keytool -exportcert -rfc -alias "$name" -keystore "target/test-tls/$name.p12" \
        -storepass changeit -file "target/test-tls/$name.pem" >/dev/null 2>&1
done
cp="$SPARK_HOME/jars/*:target/classes:$junit"
# shellcheck disable=SC2046
javac --release 17 -Xlint:all -Xlint:-serial -Xlint:-processing -Xlint:-path -Werror \
    -encoding UTF-8 -cp "$cp" -d "$classes" $(find src/test/java -name '*.java' | sort)
java -Dsparkscope.test.tls="$here/target/test-tls" -cp "$cp:$classes" \
    org.junit.platform.console.ConsoleLauncher \
    --disable-banner --disable-ansi-colors --details=tree --fail-if-no-tests --scan-class-path "$classes"
