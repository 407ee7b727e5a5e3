// Real recorded speech for the tests and the speech benchmark: Debian's pocketsphinx-testdata recordings
// (goforward.raw, "go forward ten meters", whose words are the `<move>` rule of goforward.gram; the cards
// set, cards/NNN.wav with cards/cards.transcription; the librivox set, five sentences of a LibriVox reading
// (25 s) with librivox/transcription, the read speech the language model is scored on), turned into what
// a telephone call carries: 8 kHz G.711 mu-law in 20 ms packets. And the word error rate to score a
// transcript against its reference.
// Pure functions, thread-safe; reading a file that is missing throws std::runtime_error naming the package.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace aipbx::test {

inline const std::string speech_data = "/usr/share/pocketsphinx/test/data/";
inline const std::string goforward_reference = "go forward ten meters";

// 16-bit little-endian mono samples of a headerless .raw file, or of a WAV file's data chunk.
std::vector<std::int16_t> read_raw16(const std::string& path);
std::vector<std::int16_t> read_wav16(const std::string& path);

// The cards set: (recording path, reference text) in cards.fileids order.
struct recording {
  std::string path;
  std::string reference;
};
std::vector<recording> cards_recordings();
// The librivox set: (recording path, reference text) in transcription order.
std::vector<recording> librivox_recordings();

// What the speech benchmarks stream, 16 kHz: goforward, the cards set and the librivox set one after the
// other (41 s of speech with pauses between the recordings).
std::vector<std::int16_t> benchmark_speech();
// The words of benchmark_speech, its recordings' references in the same order (96 words).
std::string benchmark_reference();

// 16 kHz speech as a call carries it: resampled to 8 kHz (speexdsp), mu-law, one base64 `data` per 20 ms.
std::vector<std::string> pcmu_packets(const std::vector<std::int16_t>& samples_16k);
// What aipbx's engines hear of such packets: decoded and resampled back to 16 kHz, the way the
// pocketsphinx engine prepares a segment.
std::vector<std::int16_t> heard_16k(const std::vector<std::string>& packets);

// The whitespace-separated words of a transcript.
std::vector<std::string> words_of(const std::string& text);
// Word-level edit distance over the reference's word count.
double word_error_rate(const std::string& reference, const std::string& hypothesis);

}  // namespace aipbx::test
