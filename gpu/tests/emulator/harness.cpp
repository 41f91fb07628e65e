// Runs one kernel of gpu/kernels on the CPU (see cuda_shim.h): `harness DIR` reads DIR/job
// ("kernel=NAME key=value ...") and the input arrays DIR/*.bin (raw little-endian), launches
// the kernel with the same grid and block sizes as gpu/src/cuda/launch.rs, and writes the
// outputs back as DIR/*.bin.
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "common.cuh"
#include "noise.cuh"

emu::Warp* emu::warp;
unsigned emu::lane;
emu::Barrier* emu::block_bar;
uint3 threadIdx, blockIdx;
uint3 blockDim, gridDim;

extern "C" {
void ogm_batch_scores(const float*, const float*, const unsigned*, unsigned, unsigned,
                      BalanceState*, DeviceStatus*);
void ogm_balance(BalanceState*, double, unsigned);
void ogm_tensor_stats(const float*, const TensorDesc*, unsigned, unsigned long long, Stats*,
                      unsigned*, Stats*, DeviceStatus*);
void ogm_modulate(float*, const TensorDesc*, unsigned, const Stats*, const BalanceState*,
                  unsigned long long, unsigned long long, unsigned, float, DeviceStatus*);
void ogm_sgd(float*, const float*, float*, unsigned long long, float, float, float, unsigned);
}

#include "fibers.h"

static std::string dir;

template <class T>
static std::vector<T> load(const char* name) {
    std::ifstream f(dir + "/" + name, std::ios::binary);
    if (!f) {
        fprintf(stderr, "harness: cannot read %s/%s\n", dir.c_str(), name);
        exit(2);
    }
    std::vector<char> bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    std::vector<T> v(bytes.size() / sizeof(T));
    memcpy(v.data(), bytes.data(), v.size() * sizeof(T));
    return v;
}

template <class T>
static void save(const char* name, const std::vector<T>& v) {
    std::ofstream f(dir + "/" + name, std::ios::binary);
    f.write(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

int main(int argc, char** argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: harness DIR\n");
        return 2;
    }
    dir = argv[1];
    // The launch order (fibers.h): in order unless OGM_EMU_SCHEDULE names another.
    if (const char* spec = getenv("OGM_EMU_SCHEDULE"); spec && !emu::parse_schedule(spec)) {
        fprintf(stderr,
                "OGM_EMU_SCHEDULE=%s: expected in-order, reverse, shuffle[:SEED] or "
                "warps-ahead[:SEED]\n",
                spec);
        return 2;
    }
    std::map<std::string, std::string> job;
    {
        std::ifstream f(dir + "/job");
        std::string kv;
        while (f >> kv) {
            auto eq = kv.find('=');
            job[kv.substr(0, eq)] = kv.substr(eq + 1);
        }
    }
    auto u64 = [&](const char* k) { return std::stoull(job.at(k)); };
    auto f64 = [&](const char* k) { return std::stod(job.at(k)); };
    const std::string kernel = job.at("kernel");
    auto state = load<BalanceState>("state.bin");
    auto status = load<DeviceStatus>("status.bin");

    if (kernel == "scores") {
        auto a = load<float>("audio.bin"), v = load<float>("visual.bin");
        auto y = load<unsigned>("labels.bin");
        unsigned batch = u64("batch"), classes = u64("classes");
        launch(2, SCORES_BLOCK, [&] {
            ogm_batch_scores(a.data(), v.data(), y.data(), batch, classes, state.data(),
                             status.data());
        });
    } else if (kernel == "balance") {
        double alpha = f64("alpha");
        unsigned active = u64("active");
        launch(1, 1, [&] { ogm_balance(state.data(), alpha, active); });
    } else if (kernel == "stats") {
        auto g = load<float>("grads.bin");
        auto t = load<TensorDesc>("tensors.bin");
        unsigned chunks = u64("total_chunks");
        std::vector<Stats> partials(chunks), out(t.size());
        std::vector<unsigned> counters(t.size(), 0);
        // Twice, as two launches on the device would: the counters must come back to zero.
        for (int rep = 0; rep < 2; ++rep) {
            launch((chunks + STATS_CHUNKS_PER_BLOCK - 1) / STATS_CHUNKS_PER_BLOCK, STATS_BLOCK, [&] {
                ogm_tensor_stats(g.data(), t.data(), t.size(), chunks, partials.data(),
                                 counters.data(), out.data(), status.data());
            });
        }
        for (unsigned c : counters) {
            if (c != 0) {
                fprintf(stderr, "harness: a ticket counter was not reset\n");
                return 3;
            }
        }
        save("stats.bin", out);
    } else if (kernel == "modulate") {
        auto g = load<float>("grads.bin");
        auto t = load<TensorDesc>("tensors.bin");
        auto s = load<Stats>("stats.bin");
        unsigned long long chunks = u64("total_chunks"), key = u64("step_key");
        unsigned noise = u64("noise");
        float max_z = (float)f64("max_z");
        launch((chunks + MOD_CHUNKS_PER_BLOCK - 1) / MOD_CHUNKS_PER_BLOCK, MOD_BLOCK, [&] {
            ogm_modulate(g.data(), t.data(), t.size(), s.data(), state.data(), key, chunks, noise,
                         max_z, status.data());
        });
        save("grads.bin", g);
    } else if (kernel == "sgd") {
        auto p = load<float>("params.bin"), g = load<float>("grads.bin"), b = load<float>("buf.bin");
        unsigned long long off = u64("offset"), n = p.size() - off;
        float lr = f64("lr"), m = f64("momentum"), wd = f64("weight_decay");
        unsigned first = u64("first");
        // A small grid, so that the grid-stride loop runs several rounds.
        launch(3, SGD_BLOCK, [&] {
            ogm_sgd(p.data() + off, g.data() + off, b.data() + off, n, lr, m, wd, first);
        });
        save("params.bin", p);
        save("buf.bin", b);
    } else if (kernel == "normals") {
        // normal_from_bits(k << 8 | 0x80) for every 24-bit k (the low 8 bits are ignored).
        std::vector<float> z(1u << 24);
        for (unsigned k = 0; k < (1u << 24); ++k) z[k] = normal_from_bits(k << 8 | 0x80u);
        save("normals.bin", z);
    } else {
        fprintf(stderr, "harness: unknown kernel %s\n", kernel.c_str());
        return 2;
    }
    save("state.bin", state);
    save("status.bin", status);
    return 0;
}
