// TLS through the real binary: a certificate made at test time with the openssl CLI, the server started
// with --tls-cert/--tls-key, and curl (a real TLS client that verifies the certificate) on 127.0.0.1. A
// missing, unreadable or mismatched key or certificate stops start-up with a clear message.
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "harness/fixture.hpp"
#include "harness/run_binary.hpp"

namespace aipbx::itest {
namespace {

constexpr const char* token = "tls-token-0123456789abcdef012345";

struct command_output {
  int exit_code = -1;
  std::string out;
};

// Runs a shell command (stderr joined to stdout).
command_output shell(const std::string& command) {
  command_output result;
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return result;
  char buf[4096];
  for (std::size_t n; (n = std::fread(buf, 1, sizeof buf, pipe)) > 0;) result.out.append(buf, n);
  const int status = ::pclose(pipe);
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return result;
}

class TlsTest : public integration_test {
 protected:
  // A self-signed P-256 certificate for 127.0.0.1 and its key: dir/<name>.crt, dir/<name>.key.
  void make_certificate(const std::string& name) {
    const auto r = shell("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 -subj "
                         "/CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 -keyout " +
                         (dir_ / (name + ".key")).string() + " -out " + (dir_ / (name + ".crt")).string());
    ASSERT_EQ(r.exit_code, 0) << r.out;
  }
  std::string crt(const std::string& name) { return (dir_ / (name + ".crt")).string(); }
  std::string key(const std::string& name) { return (dir_ / (name + ".key")).string(); }

  // curl on https://127.0.0.1:<port><target>; the output ends with a line holding the status.
  command_output curl(const std::string& target, const std::string& options) {
    return shell("curl -sS --max-time 10 " + options + " -w '\\n%{http_code}' https://127.0.0.1:" +
                 std::to_string(server().port()) + target);
  }
};

TEST_F(TlsTest, ServesHttpsWithTheConfiguredCertificate) {
  make_certificate("server");
  start_server({{"--tls-cert", crt("server")}, {"--tls-key", key("server")}, {"--api-token", token}});
  const auto listening = server().records_where(msg_is("listening"));
  ASSERT_FALSE(listening.empty());
  EXPECT_EQ(listening.back().at("tls"), true);

  const std::string trusted = "--cacert " + crt("server");
  auto r = curl("/healthz", trusted);
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_TRUE(r.out.ends_with("\n200")) << r.out;

  const std::string auth = trusted + " -H 'Authorization: Bearer " + token + "'";
  r = curl("/v1/call/stream/over-tls", auth + " -H 'Content-Type: application/json' -d '" + packet_json(1, "secret audio", 1) + "'");
  EXPECT_TRUE(r.out.ends_with("\n202")) << r.out;
  EXPECT_EQ(db().packet_count("over-tls"), 1);
  // Two requests on one TLS connection (curl reuses it), both answered.
  r = shell("curl -sS --max-time 10 " + auth + " -w '\\n%{http_code}' https://127.0.0.1:" + std::to_string(server().port()) +
            "/v1/calls/over-tls https://127.0.0.1:" + std::to_string(server().port()) + "/v1/calls/over-tls/packets");
  EXPECT_NE(r.out.find("\"packets_received\":1"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("secret audio"), std::string::npos) << r.out;
  r = curl("/v1/calls", trusted);
  EXPECT_TRUE(r.out.ends_with("\n401")) << r.out;  // TLS does not replace the token

  // A client that does not trust the certificate stops (curl: 60, certificate problem).
  r = curl("/healthz", "");
  EXPECT_EQ(r.exit_code, 60) << r.out;
  // Plain HTTP on the TLS port gets no HTTP answer, and the server goes on.
  auto plain = connect(5s);
  plain.send_raw("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
  const auto out = plain.wait_closed(5s);
  EXPECT_TRUE(out.closed);
  EXPECT_FALSE(out.received.starts_with("HTTP/")) << out.received;
  r = curl("/metrics", trusted);
  EXPECT_NE(r.out.find("aipbx_http_refused_total{reason=\"tls_handshake\"}"), std::string::npos) << r.out;
}

// An answer is written whole over TLS whatever its size: bodies of many TLS records (the API document,
// some 200 KiB), and one just past a record's 16 KiB after its head, on one kept-alive connection.
TEST_F(TlsTest, AnswersLargerThanATlsRecordArriveWhole) {
  make_certificate("server");
  start_server({{"--tls-cert", crt("server")}, {"--tls-key", key("server")}});
  const std::string data(3400, 'a');  // 3,400 base64 characters per packet: five pass 16 KiB
  for (int s = 1; s <= 6; ++s) {
    auto posted = curl("/v1/call/stream/large-over-tls", "--cacert " + crt("server") +
                                                            " -H 'Content-Type: application/json' -d '" +
                                                            packet_json(s, data, s) + "'");
    ASSERT_TRUE(posted.out.ends_with("\n202")) << posted.out;
  }
  const std::string base = "https://127.0.0.1:" + std::to_string(server().port());
  // Each transfer prints its size and Content-Length; curl fails (18, 28) on a body cut short.
  const auto r = shell("curl -sS --max-time 10 --cacert " + crt("server") +
                       " -o /dev/null -o /dev/null -o /dev/null -w '%{size_download}/%header{content-length}\n' " +
                       base + "/openapi.json " + base + "/v1/calls/large-over-tls/packets?limit=5 " + base +
                       "/v1/calls/large-over-tls/packets?limit=6");
  ASSERT_EQ(r.exit_code, 0) << r.out;
  std::istringstream lines(r.out);
  int answers = 0;
  for (std::string line; std::getline(lines, line); ++answers) {
    const auto slash = line.find('/');
    ASSERT_NE(slash, std::string::npos) << r.out;
    EXPECT_EQ(line.substr(0, slash), line.substr(slash + 1)) << r.out;
    EXPECT_GT(std::stoul(line.substr(0, slash)), 16384u) << r.out;
  }
  EXPECT_EQ(answers, 3) << r.out;
}

// Twilio connects only to wss:// URLs: a Twilio stream over TLS, from Debian's python3-websockets (a real
// WebSocket client that verifies the certificate), with the token as Twilio sends it.
TEST_F(TlsTest, StreamsSpeakWssOverTheSameCertificate) {
  make_certificate("server");
  start_server({{"--tls-cert", crt("server")}, {"--tls-key", key("server")}, {"--api-token", token}});
  const std::string script = R"PY(
import asyncio, base64, json, ssl, sys, websockets
async def main(port, cafile, token):
    ctx = ssl.create_default_context(cafile=cafile)
    async with websockets.connect(f"wss://127.0.0.1:{port}/v1/media-streams", ssl=ctx) as ws:
        await ws.send(json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"}))
        await ws.send(json.dumps({"event": "start", "start": {"callSid": "CA-wss", "tracks": ["inbound"],
            "customParameters": {"token": token},
            "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}}))
        for chunk in range(1, 26):
            await ws.send(json.dumps({"event": "media", "media": {"track": "inbound", "chunk": str(chunk),
                "timestamp": str(chunk * 20), "payload": base64.b64encode(bytes([chunk]) * 160).decode()}}))
        await ws.send(json.dumps({"event": "stop"}))
        try:
            await ws.recv()
        except websockets.ConnectionClosed as e:
            print("closed", e.code, e.reason)
asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3]))
)PY";
  const auto script_path = dir_ / "wss_client.py";
  std::ofstream(script_path) << script;
  const auto r = shell("/usr/bin/python3 " + script_path.string() + " " + std::to_string(server().port()) + " " +
                       crt("server") + " " + token);
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_NE(r.out.find("closed 1000 stream stopped"), std::string::npos) << r.out;
  const auto call = curl("/v1/calls/CA-wss", std::string("--cacert ") + crt("server") + " -H 'Authorization: Bearer " + token + "'");
  EXPECT_NE(call.out.find(R"("packets_received":25)"), std::string::npos) << call.out;
  EXPECT_NE(call.out.find(R"x("end_reason":"stream stopped (twilio)")x"), std::string::npos) << call.out;
}

TEST_F(TlsTest, SighupPutsARenewedCertificateInForceAndKeepsItWhenTheRenewalIsBad) {
  make_certificate("first");
  make_certificate("second");
  make_certificate("third");
  const auto live_crt = dir_ / "live.crt";
  const auto live_key = dir_ / "live.key";
  const auto install = [&](const std::string& cert_name, const std::string& key_name) {
    std::filesystem::copy_file(crt(cert_name), live_crt, std::filesystem::copy_options::overwrite_existing);
    std::filesystem::copy_file(key(key_name), live_key, std::filesystem::copy_options::overwrite_existing);
  };
  install("first", "first");
  start_server({{"--tls-cert", live_crt.string()}, {"--tls-key", live_key.string()}, {"--api-token", token}});
  auto r = curl("/healthz", "--cacert " + crt("first"));
  EXPECT_TRUE(r.out.ends_with("\n200")) << r.out;

  // Renewal: new files, SIGHUP; the next connection gets the new certificate, the old one is no longer
  // served.
  install("second", "second");
  server().signal(SIGHUP);
  ASSERT_TRUE(server().wait_for_record(msg_is("tls certificate reloaded"), 5s));
  r = curl("/healthz", "--cacert " + crt("second"));
  EXPECT_EQ(r.exit_code, 0) << r.out;
  EXPECT_TRUE(r.out.ends_with("\n200")) << r.out;
  r = curl("/healthz", "--cacert " + crt("first"));
  EXPECT_EQ(r.exit_code, 60) << r.out;

  // A renewal caught half-written (a key that does not match the certificate) leaves the certificate in
  // force.
  allow_error_log("tls certificate not reloaded; the certificate in force stays");
  install("third", "second");
  server().signal(SIGHUP);
  const auto refused = msg_is("tls certificate not reloaded; the certificate in force stays");
  ASSERT_TRUE(server().wait_for_record(refused, 5s));
  EXPECT_NE(
      server().records_where(refused).back().at("error").as_string().find("does not match the certificate"),
      std::string::npos);
  r = curl("/healthz", "--cacert " + crt("second"));
  EXPECT_TRUE(r.out.ends_with("\n200")) << r.out;
  r = curl("/v1/calls", "--cacert " + crt("second") + " -H 'Authorization: Bearer " + token + "'");
  EXPECT_TRUE(r.out.ends_with("\n200")) << r.out;
}

TEST_F(TlsTest, BadCertificateOrKeyStopsStartUp) {
  make_certificate("server");
  make_certificate("other");
  const auto garbage = (dir_ / "garbage.pem").string();
  std::ofstream(garbage) << "-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n";
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases{
      {{"--tls-cert", crt("server"), "--tls-key", (dir_ / "missing.key").string()},
       "cannot read the TLS key file '" + (dir_ / "missing.key").string() + "'"},
      {{"--tls-cert", (dir_ / "missing.crt").string(), "--tls-key", key("server")}, "cannot read the TLS certificate file"},
      {{"--tls-cert", crt("server"), "--tls-key", key("other")}, "does not match the certificate"},
      {{"--tls-cert", garbage, "--tls-key", key("server")}, "cannot load the TLS certificate '" + garbage + "'"},
      {{"--tls-cert", crt("server"), "--tls-key", garbage}, "cannot load the TLS key '" + garbage + "'"},
      {{"--tls-cert", crt("server")}, "--tls-cert and --tls-key go together"},
  };
  for (const auto& [flags, message] : cases) {
    SCOPED_TRACE(message);
    std::vector<std::string> args{"serve", "--port", "0", "--db", (dir_ / "never.db").string()};
    args.insert(args.end(), flags.begin(), flags.end());
    const auto run = run_aipbx(args);
    EXPECT_EQ(run.exit_code, 2) << run.err;
    EXPECT_NE(run.err.find(message), std::string::npos) << run.err;
  }
  EXPECT_FALSE(std::filesystem::exists(dir_ / "never.db"));
}

}  // namespace
}  // namespace aipbx::itest
