// Fused attention through cuDNN's SDPA graphs (cudnn-frontend), behind plain C functions for
// Rust (src/kernels/cudnn.rs). Built by build.rs under the `cudnn` feature.
//
// - libcudnn.so.9 is opened at run time (the frontend's dynamic loading): a machine without it
//   gets an error from spangrad_cudnn_load, and the engine keeps its own attention.
// - Every tensor is described by its dims and strides in (batch, heads, sequence, head_dim)
//   order, so the caller chooses layouts (head-major tensors, or views into a fused QKV row).
// - The padding mask comes from per-pair lengths: `seq_len_q` and `seq_len_kv`, int32 on the
//   device. Rows past a pair's query length get zeros.
// - The forward writes each query row's softmax statistics (the log-sum-exp of the scaled
//   scores, f32 [b, h, s_q, 1]), which the backward takes instead of the probabilities.
// - Graphs are built once per shape and layout and cached: building takes milliseconds to
//   seconds; the time it took is returned to the caller, which reports it.

#include <cudnn_frontend.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>
#include <unordered_map>
#include <vector>

#include <dlfcn.h>

namespace fe = cudnn_frontend;

// The frontend's dynamic loading resolves every cuDNN symbol through this handle.
namespace cudnn_frontend {
void *cudnn_dlhandle = nullptr;
}

extern "C" {

// What one call describes: dims are (b, h, s, d); strides are in elements, in the same order.
typedef struct {
    int64_t dims[4];
    int64_t strides[4];
} spangrad_tensor_desc;

typedef struct {
    // 0: bf16, 1: f16.
    int32_t dtype;
    spangrad_tensor_desc q, k, v, o;
    // The backward's: dO like O, dQ/dK/dV like Q/K/V unless given their own layout.
    spangrad_tensor_desc d_o, d_q, d_k, d_v;
    float scale;
} spangrad_attention_desc;

}  // extern "C"

namespace {

enum Uid : int64_t { Q = 1, K, V, O, STATS, DO, DQ, DK, DV, SEQ_Q, SEQ_KV };

std::mutex lock;
bool opened = false;
// One handle per device: a handle belongs to the device current when it was created (the
// caller makes the tensors' device current before each call).
std::map<int32_t, cudnnHandle_t> handles;
thread_local std::string last_error;

int fail(const std::string &message) {
    last_error = message;
    return 1;
}

std::vector<int64_t> vec(const int64_t (&a)[4]) { return {a[0], a[1], a[2], a[3]}; }

using Key = std::vector<int64_t>;

Key key_of(int32_t device, bool backward, const spangrad_attention_desc &d) {
    Key key = {device, backward, d.dtype};
    const spangrad_tensor_desc *all[] = {&d.q, &d.k, &d.v, &d.o, &d.d_o, &d.d_q, &d.d_k, &d.d_v};
    for (const auto *t : all) {
        key.insert(key.end(), t->dims, t->dims + 4);
        key.insert(key.end(), t->strides, t->strides + 4);
    }
    return key;
}

struct Built {
    std::shared_ptr<fe::graph::Graph> graph;
    int64_t workspace;
};

std::map<Key, Built> cache;

std::shared_ptr<fe::graph::Tensor_attributes> tensor(fe::graph::Graph &g, const char *name, Uid uid,
                                                     const spangrad_tensor_desc &t) {
    return g.tensor(fe::graph::Tensor_attributes()
                        .set_name(name)
                        .set_uid(uid)
                        .set_dim(vec(t.dims))
                        .set_stride(vec(t.strides)));
}

std::shared_ptr<fe::graph::Tensor_attributes> lengths(fe::graph::Graph &g, const char *name, Uid uid,
                                                      int64_t b) {
    return g.tensor(fe::graph::Tensor_attributes()
                        .set_name(name)
                        .set_uid(uid)
                        .set_dim({b, 1, 1, 1})
                        .set_stride({1, 1, 1, 1})
                        .set_data_type(fe::DataType_t::INT32));
}

// The device's handle, created on first use. Called with `lock` held.
int handle_for(int32_t device, cudnnHandle_t *out) {
    if (!opened) return fail("cuDNN is not loaded");
    auto found = handles.find(device);
    if (found != handles.end()) {
        *out = found->second;
        return 0;
    }
    cudnnHandle_t handle = nullptr;
    cudnnStatus_t status = fe::detail::create_handle(&handle);
    if (status != CUDNN_STATUS_SUCCESS)
        return fail(std::string("cudnnCreate failed: ") + fe::detail::get_error_string(status));
    handles.emplace(device, handle);
    *out = handle;
    return 0;
}

int build(cudnnHandle_t handle, int32_t device, bool backward, const spangrad_attention_desc &d,
          Built **out, double *built_ms);

// The graph for this call's device and shapes, built on first use. `built_ms` gets the time
// building took (0 when it came from the cache). The frontend may throw: that is a failure too.
// Called with `lock` held.
int graph_for(int32_t device, bool backward, const spangrad_attention_desc &d, cudnnHandle_t *handle,
              Built **out, double *built_ms) {
    *built_ms = 0;
    if (handle_for(device, handle)) return 1;
    try {
        return build(*handle, device, backward, d, out, built_ms);
    } catch (const std::exception &e) {
        return fail(std::string("building the attention graph threw: ") + e.what());
    }
}

int build(cudnnHandle_t handle, int32_t device, bool backward, const spangrad_attention_desc &d,
          Built **out, double *built_ms) {
    Key key = key_of(device, backward, d);
    auto found = cache.find(key);
    if (found != cache.end()) {
        *out = &found->second;
        return 0;
    }
    auto start = std::chrono::steady_clock::now();
    auto g = std::make_shared<fe::graph::Graph>();
    g->set_io_data_type(d.dtype == 0 ? fe::DataType_t::BFLOAT16 : fe::DataType_t::HALF)
        .set_intermediate_data_type(fe::DataType_t::FLOAT)
        .set_compute_data_type(fe::DataType_t::FLOAT);
    int64_t b = d.q.dims[0], h = d.q.dims[1], s_q = d.q.dims[2];
    auto q = tensor(*g, "Q", Q, d.q);
    auto k = tensor(*g, "K", K, d.k);
    auto v = tensor(*g, "V", V, d.v);
    auto seq_q = lengths(*g, "seq_q", SEQ_Q, b);
    auto seq_kv = lengths(*g, "seq_kv", SEQ_KV, b);
    auto stats_desc = [&](std::shared_ptr<fe::graph::Tensor_attributes> stats) {
        stats->set_uid(STATS)
            .set_data_type(fe::DataType_t::FLOAT)
            .set_dim({b, h, s_q, 1})
            .set_stride({h * s_q, s_q, 1, 1});
    };
    if (!backward) {
        auto options = fe::graph::SDPA_attributes()
                           .set_name("attention_forward")
                           .set_generate_stats(true)
                           .set_attn_scale(d.scale)
                           .set_padding_mask(true)
                           .set_seq_len_q(seq_q)
                           .set_seq_len_kv(seq_kv);
        auto [o, stats] = g->sdpa(q, k, v, options);
        o->set_output(true).set_uid(O).set_dim(vec(d.o.dims)).set_stride(vec(d.o.strides));
        stats->set_output(true);
        stats_desc(stats);
    } else {
        auto o = tensor(*g, "O", O, d.o);
        auto d_o = tensor(*g, "dO", DO, d.d_o);
        auto stats = g->tensor(fe::graph::Tensor_attributes().set_name("stats"));
        stats_desc(stats);
        auto options = fe::graph::SDPA_backward_attributes()
                           .set_name("attention_backward")
                           .set_attn_scale(d.scale)
                           .set_padding_mask(true)
                           .set_seq_len_q(seq_q)
                           .set_seq_len_kv(seq_kv)
                           .set_deterministic_algorithm(true);
        auto [d_q, d_k, d_v] = g->sdpa_backward(q, k, v, o, d_o, stats, options);
        d_q->set_output(true).set_uid(DQ).set_dim(vec(d.d_q.dims)).set_stride(vec(d.d_q.strides));
        d_k->set_output(true).set_uid(DK).set_dim(vec(d.d_k.dims)).set_stride(vec(d.d_k.strides));
        d_v->set_output(true).set_uid(DV).set_dim(vec(d.d_v.dims)).set_stride(vec(d.d_v.strides));
    }
    auto check = [](const fe::error_object &e, const char *step) {
        if (e.is_good()) return std::string();
        return std::string(step) + ": " + e.err_msg;
    };
    std::string error = check(g->validate(), "validate");
    if (error.empty()) error = check(g->build_operation_graph(handle), "build_operation_graph");
    if (error.empty()) error = check(g->create_execution_plans({fe::HeurMode_t::A}), "create_execution_plans");
    if (error.empty()) error = check(g->check_support(handle), "check_support");
    if (error.empty()) error = check(g->build_plans(handle), "build_plans");
    if (!error.empty()) return fail(error);
    int64_t workspace = 0;
    if (!g->get_workspace_size(workspace).is_good()) return fail("get_workspace_size failed");
    *built_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    auto inserted = cache.emplace(key, Built{g, workspace});
    *out = &inserted.first->second;
    return 0;
}

// Runs the graph of `desc` (built on first use) on `stream` with the tensors of `pack`.
int execute(int32_t device, bool backward, void *stream, const spangrad_attention_desc &desc,
            std::unordered_map<int64_t, void *> pack, void *workspace) {
    std::lock_guard<std::mutex> guard(lock);
    cudnnHandle_t handle = nullptr;
    Built *built = nullptr;
    double built_ms = 0;
    if (graph_for(device, backward, desc, &handle, &built, &built_ms)) return 1;
    if (fe::detail::set_stream(handle, static_cast<cudaStream_t>(stream)) != CUDNN_STATUS_SUCCESS)
        return fail("cudnnSetStream failed");
    auto e = built->graph->execute(handle, pack, workspace);
    return e.is_good() ? 0 : fail(std::string(backward ? "backward: " : "forward: ") + e.err_msg);
}

}  // namespace

extern "C" {

// Opens cuDNN: `path`, or libcudnn.so.9 from the loader's search path. 0 on success; else the
// reason is in spangrad_cudnn_error().
int spangrad_cudnn_load(const char *path) {
    std::lock_guard<std::mutex> guard(lock);
    if (opened) return 0;
    const char *name = (path && *path) ? path : "libcudnn.so.9";
    void *library = dlopen(name, RTLD_NOW | RTLD_GLOBAL);
    if (!library) {
        const char *why = dlerror();
        return fail(std::string("cannot open ") + name + ": " + (why ? why : "unknown error"));
    }
    fe::cudnn_dlhandle = library;
    opened = true;
    return 0;
}

// cuDNN's version at run time (e.g. 91301 for 9.13.1); 0 before a successful load.
int64_t spangrad_cudnn_version(void) {
    std::lock_guard<std::mutex> guard(lock);
    return opened ? static_cast<int64_t>(fe::detail::get_backend_version()) : 0;
}

// The calling thread's last failure (valid until its next call).
const char *spangrad_cudnn_error(void) { return last_error.c_str(); }

// Builds (or finds) the graph of a forward (`backward` 0) or backward (1) on `device` (which
// must be current) and says how much workspace its execution needs and how long building took.
int spangrad_cudnn_attention_prepare(int32_t device, int32_t backward,
                                     const spangrad_attention_desc *desc, int64_t *workspace,
                                     double *built_ms) {
    std::lock_guard<std::mutex> guard(lock);
    cudnnHandle_t handle = nullptr;
    Built *built = nullptr;
    if (graph_for(device, backward != 0, *desc, &handle, &built, built_ms)) return 1;
    *workspace = built->workspace;
    return 0;
}

// The forward: O and the statistics from Q, K, V on `stream` of `device` (current). Pointers are device pointers
// laid out as `desc` says; `seq_q`/`seq_kv` int32 [b]; `workspace` as prepare said.
int spangrad_cudnn_attention_forward(int32_t device, void *stream, const spangrad_attention_desc *desc,
                                     const void *q,
                                     const void *k, const void *v, const int32_t *seq_q,
                                     const int32_t *seq_kv, void *o, float *stats, void *workspace) {
    return execute(device, false, stream, *desc,
                   {{Q, const_cast<void *>(q)},
                    {K, const_cast<void *>(k)},
                    {V, const_cast<void *>(v)},
                    {SEQ_Q, const_cast<int32_t *>(seq_q)},
                    {SEQ_KV, const_cast<int32_t *>(seq_kv)},
                    {O, o},
                    {STATS, stats}},
                   workspace);
}

// The backward: dQ, dK, dV from Q, K, V, O, dO and the forward's statistics.
int spangrad_cudnn_attention_backward(int32_t device, void *stream, const spangrad_attention_desc *desc,
                                      const void *q,
                                      const void *k, const void *v, const void *o, const void *d_o,
                                      const float *stats, const int32_t *seq_q, const int32_t *seq_kv,
                                      void *d_q, void *d_k, void *d_v, void *workspace) {
    return execute(device, true, stream, *desc,
                   {{Q, const_cast<void *>(q)},
                    {K, const_cast<void *>(k)},
                    {V, const_cast<void *>(v)},
                    {SEQ_Q, const_cast<int32_t *>(seq_q)},
                    {SEQ_KV, const_cast<int32_t *>(seq_kv)},
                    {O, const_cast<void *>(o)},
                    {DO, const_cast<void *>(d_o)},
                    {STATS, const_cast<float *>(stats)},
                    {DQ, d_q},
                    {DK, d_k},
                    {DV, d_v}},
                   workspace);
}

}  // extern "C"
