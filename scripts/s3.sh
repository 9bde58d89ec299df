# Sourced by scripts/test: starts two throwaway S3-compatible servers (moto, from PyPI)
# on loopback, each with the bucket `strata-test`, and exports
#   STRATA_TEST_S3           an endpoint that takes any key (the tests' usual server);
#   STRATA_TEST_S3_AUTH      one that checks signatures against its one IAM access key,
#   STRATA_TEST_S3_KEY/_SECRET  that key (a wrong one gets 403, as on AWS).
# Two, because moto's signature check refuses its own listings under a prefix with `/`
# (publish --gc lists), while the credential tests need a server that checks.
# STRATA_TEST_S3_BUCKET names the bucket. The servers stop when the calling shell exits.
#
# Each server handles one request at a time: moto checks `If-None-Match: *` and then
# writes, without a lock, so its threaded server lets two racing create-only PUTs both
# succeed; serialized, each PUT is atomic, as S3's conditional write is. The probe below
# fails the run on a moto that ignores the header (before 5.0.15).
start_test_s3() {
  [ -z "${STRATA_TEST_S3:-}" ] || return 0
  if ! python3 -c 'import moto.server, boto3' >/dev/null 2>&1; then
    python3 -m pip install --quiet "moto[server]>=5.0.15" 2>/dev/null ||
      python3 -m pip install --quiet --break-system-packages "moto[server]>=5.0.15"
  fi
  s3dir=$(mktemp -d /tmp/strata-s3.XXXXXX)
  s3port=$((20000 + RANDOM % 20000))
  s3pids=()
  for port in "$s3port" "$((s3port + 1))"; do
    python3 -c '
import sys
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import run_simple
run_simple("127.0.0.1", int(sys.argv[1]),
           DomainDispatcherApplication(create_backend_app), threaded=False)
' "$port" >"$s3dir/log.$port" 2>&1 &
    s3pids+=($!)
  done
  _s3_prev=""
  eval "set -- $(trap -p EXIT)"
  [ $# -lt 3 ] || _s3_prev=$3
  trap 'kill "${s3pids[@]}" 2>/dev/null; rm -rf "$s3dir"; eval "$_s3_prev"' EXIT
  credentials=$(S3_PORT="$s3port" python3 - <<'EOF'
import json, os, socket, time, urllib.request
import boto3
from botocore.exceptions import ClientError

port = int(os.environ["S3_PORT"])
for p in (port, port + 1):
    for _ in range(300):
        try:
            socket.create_connection(("127.0.0.1", p), 0.1).close()
            break
        except OSError:
            time.sleep(0.1)
    else:
        raise SystemExit(f"the S3 test server on port {p} did not start")

def setup(p):
    return dict(endpoint_url=f"http://127.0.0.1:{p}", region_name="us-east-1",
                aws_access_key_id="setup", aws_secret_access_key="setup")

for p in (port, port + 1):
    s3 = boto3.client("s3", **setup(p))
    s3.create_bucket(Bucket="strata-test")
    s3.put_object(Bucket="strata-test", Key="probe", Body=b"1", IfNoneMatch="*")
    try:
        s3.put_object(Bucket="strata-test", Key="probe", Body=b"2", IfNoneMatch="*")
        raise SystemExit("the S3 test server overwrote an object despite If-None-Match: *")
    except ClientError as e:
        assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 412, e
    s3.delete_object(Bucket="strata-test", Key="probe")

# The second server: one IAM user allowed s3:*, its key, then signatures checked.
iam = boto3.client("iam", **setup(port + 1))
iam.create_user(UserName="strata-test")
iam.put_user_policy(UserName="strata-test", PolicyName="s3", PolicyDocument=json.dumps(
    {"Version": "2012-10-17",
     "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
key = iam.create_access_key(UserName="strata-test")["AccessKey"]
urllib.request.urlopen(urllib.request.Request(
    f"http://127.0.0.1:{port + 1}/moto-api/reset-auth", data=b"0",
    headers={"Content-Type": "text/plain"}))
print(key["AccessKeyId"], key["SecretAccessKey"])
EOF
  ) || { cat "$s3dir"/log.* >&2; return 1; }
  export STRATA_TEST_S3="http://127.0.0.1:$s3port"
  export STRATA_TEST_S3_AUTH="http://127.0.0.1:$((s3port + 1))"
  export STRATA_TEST_S3_BUCKET=strata-test
  export STRATA_TEST_S3_KEY="${credentials% *}"
  export STRATA_TEST_S3_SECRET="${credentials#* }"
}
