# Sourced by bench/gateway.sh and bench/gateway-instr.sh: a Warden home with the full
# gateway policy (TLS 1.3, API key, Cedar, limits, validation, minimisation, audit log)
# in front of the mock upstream on 127.0.0.1:$UP_PORT.
#   gateway_home DIR PUBLIC_PORT ADMIN_PORT UP_PORT BIN   (prints the API key)
# GW_AUDIT_BATCH_MS / GW_AUDIT_PUBLISH_MS set [gateway.audit] batch_ms / publish_ms
# (unset: the product's defaults). The older binaries know no publish_ms.
# GW_WORKERS sets [gateway] workers (unset: one connection thread per core).
gateway_home() {
  local H=$1 port=$2 aport=$3 up=$4 bin=$5
  mkdir -p "$H"
  "$bin/examples/mock_upstream" init-home "$H"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
    -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout "$H/tls.key" -out "$H/tls.pem" 2>/dev/null
  echo GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ > "$H/admin.totp"
  cat > "$H/policies.cedar" <<'CEDAR'
permit(principal in Warden::Role::"user", action in [Warden::Action::"chat", Warden::Action::"models"], resource)
when { principal.clearance >= resource.classification };
CEDAR
  cat > "$H/warden.toml" <<TOML
[gateway]
listen = "127.0.0.1:$port"
policy = "policies.cedar"
${GW_WORKERS:+workers = $GW_WORKERS}
limits = { requests_per_minute = 100000000, tokens_per_minute = 100000000000, concurrency = 1024 }
[gateway.tls]
cert = "tls.pem"
key = "tls.key"
[gateway.admin]
listen = "127.0.0.1:$aport"
admins = [{ name = "admin", totp_secret_file = "admin.totp" }]
[gateway.admin.tls]
cert = "tls.pem"
key = "tls.key"
client_ca = "tls.pem"
# Screening stays at its defaults (input and output screening, behaviour and drift
# monitors), except that the monitor's alerts do not throttle: one key sending the same
# prompt thousands of times a second is exactly what near_duplicates and output_volume
# throttle, and the benchmark measures the cost of the checks, not 429s.
[gateway.audit]
batch_ms = ${GW_AUDIT_BATCH_MS:-5}
${GW_AUDIT_PUBLISH_MS:+publish_ms = $GW_AUDIT_PUBLISH_MS}
[gateway.screening.actions]
near_duplicates = "alert"
input_sweep = "alert"
parameter_sweep = "alert"
output_volume = "alert"
[[gateway.models]]
name = "bench"
upstream = "http://127.0.0.1:$up"
classification = 1
TOML
  "$bin/warden" --home "$H" keys create bench --role user --clearance 1 2>/dev/null
}

# Sourced by bench/gateway-cpu.sh and bench/gateway-instr.sh (which define BIN, OUT, PIDS,
# C and wait_port): starts the mock upstream on UP_PORT, makes the home $OUT/home for
# the gateway's ports and sets H, KEY and URL.
#   bench_gateway_env UP_PORT PUBLIC_PORT ADMIN_PORT
bench_gateway_env() {
  "$BIN/examples/mock_upstream" "$1" 2>/dev/null & PIDS+=($!); wait_port "$1"
  H="$OUT/home"
  KEY=$(gateway_home "$H" "$2" "$3" "$1" "$BIN")
  URL=https://localhost:$2/v1/chat/completions
}

# Sourced by bench/gateway.sh and bench/gateway-cpu.sh: writes $OUT/nginx.conf, one worker
# proxying to the mock upstream on UP_PORT with keepalive (connections never recycled:
# nginx's default closes a keep-alive connection after 1,000 requests), in plain HTTP on PLAIN_PORT and
# with TLS 1.3 (the gateway home's certificate, for a like-for-like row) on TLS_PORT.
#   nginx_conf OUT H UP_PORT PLAIN_PORT TLS_PORT
nginx_conf() {
  local out=$1 h=$2 up=$3 plain=$4 tls=$5
  cat > "$out/nginx.conf" <<NGX
worker_processes 1;
pid $PWD/$out/nginx.pid;
error_log $PWD/$out/nginx.err;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 10000000;
  upstream up { server 127.0.0.1:$up; keepalive 128; keepalive_requests 10000000; }
  server {
    listen 127.0.0.1:$plain;
    location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_buffering off; }
  }
  server {
    listen 127.0.0.1:$tls ssl;
    ssl_protocols TLSv1.3;
    ssl_certificate $PWD/$h/tls.pem;
    ssl_certificate_key $PWD/$h/tls.key;
    location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_buffering off; }
  }
}
NGX
}
