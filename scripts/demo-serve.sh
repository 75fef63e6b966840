# Sourced by scripts/demo.sh after deploy: serve the deployed model with llama.cpp's own
# server on loopback and put Warden's gateway in front of it (TLS 1.3, API keys, Cedar
# default-deny, parameter minimisation, audit record per request).
say "serve: llama.cpp on the deployed file, the Warden gateway in front"
if ! "$venv/bin/python" -c 'import xllamacpp' 2>/dev/null; then
  "$venv/bin/pip" install -q xllamacpp
fi
pki="$work/pki"; mkdir -p "$pki"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
  -subj /CN=warden-demo-ca -keyout "$pki/ca.key" -out "$pki/ca.pem" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=localhost \
  -keyout "$pki/server.key" -out "$pki/server.csr" 2>/dev/null
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n' > "$pki/ext"
openssl x509 -req -in "$pki/server.csr" -CA "$pki/ca.pem" -CAkey "$pki/ca.key" -CAcreateserial \
  -days 1 -extfile "$pki/ext" -out "$pki/server.pem" 2>/dev/null
printf 'JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP' > "$pki/admin.totp"
ports=($("$venv/bin/python" -c 'import socket
for _ in range(3):
    s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'))
lport=${ports[0]}; gport=${ports[1]}; aport=${ports[2]}
cat > "$work/policies.cedar" <<'CEDAR'
@id("users-chat")
permit(principal in Warden::Role::"user",
       action in [Warden::Action::"chat", Warden::Action::"completions", Warden::Action::"models"],
       resource)
when { principal.clearance >= resource.classification };
CEDAR
cat > "$work/gateway.toml" <<TOML
[gateway]
listen = "127.0.0.1:$gport"
policy = "$work/policies.cedar"

[gateway.tls]
cert = "$pki/server.pem"
key = "$pki/server.key"

[gateway.admin]
listen = "127.0.0.1:$aport"

[gateway.admin.tls]
cert = "$pki/server.pem"
key = "$pki/server.key"
client_ca = "$pki/ca.pem"

[[gateway.admin.admins]]
name = "alice.admin"
totp_secret_file = "$pki/admin.totp"

[[gateway.models]]
name = "smollm2-135m"
upstream = "http://127.0.0.1:$lport"
classification = 1
upstream_api_key_env = "DEMO_UPSTREAM_KEY"
TOML

key=$("$W" keys create demo-user --role user --clearance 1)
export DEMO_UPSTREAM_KEY="upstream-$RANDOM$RANDOM"
deployed_file=$(find "$work/deployed" -name '*.gguf' | head -n 1)
MODEL="$deployed_file" PORT=$lport THREADS=1 API_KEY="$DEMO_UPSTREAM_KEY" \
  "$venv/bin/python" "$repo/../shared/tools/llama-server.py" >"$work/llama.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 300); do
  curl -fs "http://127.0.0.1:$lport/health" >/dev/null 2>&1 && break
  sleep 0.5
done
"$W" serve --config "$work/gateway.toml" 2>"$work/serve.log" &
serve_pid=$!
pids+=($serve_pid)
for _ in $(seq 1 100); do
  curl -s --cacert "$pki/ca.pem" "https://localhost:$gport/v1/models" >/dev/null 2>&1 && break
  sleep 0.2
done
body='{"model":"smollm2-135m","messages":[{"role":"user","content":"Name one colour."}],"max_tokens":12,"logprobs":true,"top_logprobs":2}'
echo "chat through the gateway (logprobs requested; the policy strips them):"
curl -s --cacert "$pki/ca.pem" "https://localhost:$gport/v1/chat/completions" \
  -H "Authorization: Bearer $key" -H 'Content-Type: application/json' -d "$body" | head -c 600
echo
echo "the same without a valid key:"
curl -s --http1.1 -o /dev/null -w 'HTTP %{http_code}\n' --cacert "$pki/ca.pem" \
  "https://localhost:$gport/v1/chat/completions" -H 'Authorization: Bearer wdn_not-a-key' \
  -H 'Content-Type: application/json' -d "$body" || true
echo "plain HTTP to the TLS port:"
curl -s -o /dev/null -w 'HTTP %{http_code}\n' "http://127.0.0.1:$gport/v1/models" || echo "(refused: TLS only)"
kill "$serve_pid" 2>/dev/null || true
wait "$serve_pid" 2>/dev/null || true
