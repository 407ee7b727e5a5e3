#include "support/speech_corpus.hpp"

#include "media/audio_codec.hpp"
#include "media/resampler.hpp"

#include <algorithm>
#include <cstring>
#include <fstream>
#include <iterator>
#include <sstream>
#include <stdexcept>

namespace aipbx::test {
namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path + " (package pocketsphinx-testdata)");
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::vector<std::int16_t> samples_of(const char* bytes, std::size_t size) {
  std::vector<std::int16_t> out(size / 2);
  for (std::size_t i = 0; i < out.size(); ++i)
    out[i] = static_cast<std::int16_t>(static_cast<std::uint8_t>(bytes[2 * i]) |
                                       (static_cast<std::uint8_t>(bytes[2 * i + 1]) << 8));
  return out;
}

std::uint32_t le32(const std::string& s, std::size_t at) {
  std::uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<std::uint8_t>(s[at + static_cast<std::size_t>(i)]);
  return v;
}

}  // namespace

std::vector<std::string> words_of(const std::string& text) {
  std::istringstream in(text);
  return {std::istream_iterator<std::string>(in), std::istream_iterator<std::string>()};
}

std::vector<std::int16_t> read_raw16(const std::string& path) {
  const std::string bytes = read_file(path);
  return samples_of(bytes.data(), bytes.size());
}

std::vector<std::int16_t> read_wav16(const std::string& path) {
  const std::string bytes = read_file(path);
  if (bytes.size() < 12 || bytes.compare(0, 4, "RIFF") != 0 || bytes.compare(8, 4, "WAVE") != 0)
    throw std::runtime_error(path + " is not a WAV file");
  for (std::size_t at = 12; at + 8 <= bytes.size();) {
    const std::uint32_t size = le32(bytes, at + 4);
    if (bytes.compare(at, 4, "data") == 0)
      return samples_of(bytes.data() + at + 8, std::min<std::size_t>(size, bytes.size() - at - 8));
    at += 8 + size + (size & 1);
  }
  throw std::runtime_error(path + " has no data chunk");
}

namespace {

// The recordings of one directory of pocketsphinx-testdata and their words, from its transcription file:
// lines like "<s> ten of clubs  </s> (001)", the recording's name in parentheses.
std::vector<recording> recordings_of(const std::string& directory, const std::string& transcription) {
  std::istringstream lines(read_file(speech_data + directory + "/" + transcription));
  std::vector<recording> out;
  for (std::string line; std::getline(lines, line);) {
    const auto open = line.rfind('('), close = line.rfind(')');
    if (open == std::string::npos || close == std::string::npos) continue;
    std::string words;
    for (const auto& w : words_of(line.substr(0, open)))
      if (w != "<s>" && w != "</s>") words += (words.empty() ? "" : " ") + w;
    out.push_back({speech_data + directory + "/" + line.substr(open + 1, close - open - 1) + ".wav", words});
  }
  return out;
}

}  // namespace

std::vector<recording> cards_recordings() { return recordings_of("cards", "cards.transcription"); }

std::vector<recording> librivox_recordings() { return recordings_of("librivox", "transcription"); }

std::vector<std::int16_t> benchmark_speech() {
  std::vector<std::int16_t> speech = read_raw16(speech_data + "goforward.raw");
  for (const auto& list : {cards_recordings(), librivox_recordings()})
    for (const auto& r : list) {
      const auto samples = read_wav16(r.path);
      speech.insert(speech.end(), samples.begin(), samples.end());
    }
  return speech;
}

std::string benchmark_reference() {
  std::string words = goforward_reference;
  for (const auto& list : {cards_recordings(), librivox_recordings()})
    for (const auto& r : list) words += " " + r.reference;
  return words;
}

std::vector<std::string> pcmu_packets(const std::vector<std::int16_t>& samples_16k) {
  const auto narrow = media::resample(samples_16k, 16000, 8000).value();
  std::vector<std::string> out;
  for (std::size_t at = 0; at < narrow.size(); at += 160) {
    const std::size_t n = std::min<std::size_t>(160, narrow.size() - at);
    out.push_back(media::encode_audio(media::media_format::pcmu(), std::span(narrow).subspan(at, n)));
  }
  return out;
}

std::vector<std::int16_t> heard_16k(const std::vector<std::string>& packets) {
  std::vector<std::int16_t> narrow;
  for (const auto& p : packets) {
    const auto samples = media::decode_audio(media::media_format::pcmu(), p).value();
    narrow.insert(narrow.end(), samples.begin(), samples.end());
  }
  return media::resample(narrow, 8000, 16000).value();
}

double word_error_rate(const std::string& reference, const std::string& hypothesis) {
  const auto r = words_of(reference), h = words_of(hypothesis);
  std::vector<std::vector<std::size_t>> d(r.size() + 1, std::vector<std::size_t>(h.size() + 1));
  for (std::size_t i = 0; i <= r.size(); ++i) d[i][0] = i;
  for (std::size_t j = 0; j <= h.size(); ++j) d[0][j] = j;
  for (std::size_t i = 1; i <= r.size(); ++i)
    for (std::size_t j = 1; j <= h.size(); ++j)
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (r[i - 1] == h[j - 1] ? 0 : 1)});
  return r.empty() ? (h.empty() ? 0.0 : 1.0) : static_cast<double>(d[r.size()][h.size()]) / static_cast<double>(r.size());
}

}  // namespace aipbx::test
