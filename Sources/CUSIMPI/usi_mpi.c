// The dlopen/dlsym shim of usi_mpi.h. Every MPI handle is reached as the address of an Open
// MPI global (what mpi.h's OMPI_PREDEFINED_GLOBAL expands to), so no MPI header is needed.
#include "usi_mpi.h"

#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

// Open MPI's handles are pointers to opaque structs; void * has the same representation.
typedef void *mpi_handle;

static struct {
    int loaded;
    void *library;
    mpi_handle comm_world, errors_return;
    mpi_handle types[4];      // indexed by usi_mpi_type
    mpi_handle operations[2]; // indexed by usi_mpi_operation
    int (*init_thread)(int *, char ***, int, int *);
    int (*finalized)(int *);
    int (*comm_rank)(mpi_handle, int *);
    int (*comm_size)(mpi_handle, int *);
    int (*allreduce)(const void *, void *, int, mpi_handle, mpi_handle, mpi_handle);
    int (*iallreduce)(const void *, void *, int, mpi_handle, mpi_handle, mpi_handle, void **);
    int (*wait)(void **, void *);
    int (*test)(void **, int *, void *);
    int (*barrier)(mpi_handle);
    int (*bcast)(void *, int, mpi_handle, int, mpi_handle);
    int (*abort_)(mpi_handle, int);
    int (*finalize)(void);
    int (*set_errhandler)(mpi_handle, mpi_handle);
    int (*error_string)(int, char *, int *);
} mpi;

#define MPI_IN_PLACE_ADDRESS ((void *)1)
#define MPI_STATUS_IGNORE_ADDRESS ((void *)0)
// Open MPI's MPI_MAX_ERROR_STRING.
#define MPI_ERROR_TEXT_CAPACITY 256

static const size_t element_bytes[4] = {4, 8, 8, 1};

static int resolve(const char *name, void **slot, char *error, size_t capacity) {
    *slot = dlsym(mpi.library, name);
    if (*slot == NULL) {
        snprintf(error, capacity, "the MPI library has no symbol %s (is it Open MPI? MPICH is not supported)", name);
        return -1;
    }
    return 0;
}

int usi_mpi_load(const char *library, char *error, size_t error_capacity) {
    if (mpi.loaded) return 0;
    // RTLD_GLOBAL: Open MPI's plug-ins (mca_*.so) are opened by libmpi itself and resolve
    // libmpi's and libopen-pal's symbols from the global scope; with RTLD_LOCAL they fail to
    // load ("undefined symbol") on builds that do not link them against libmpi.
    mpi.library = dlopen(library, RTLD_NOW | RTLD_GLOBAL);
    if (mpi.library == NULL) {
        const char *why = dlerror();
        snprintf(error, error_capacity, "%s", why ? why : "dlopen failed");
        return -1;
    }
    struct { const char *name; void **slot; } symbols[] = {
        {"ompi_mpi_comm_world", &mpi.comm_world},
        {"ompi_mpi_errors_return", &mpi.errors_return},
        {"ompi_mpi_float", &mpi.types[USI_MPI_FLOAT]},
        {"ompi_mpi_double", &mpi.types[USI_MPI_DOUBLE]},
        {"ompi_mpi_int64_t", &mpi.types[USI_MPI_INT64]},
        {"ompi_mpi_byte", &mpi.types[USI_MPI_BYTE]},
        {"ompi_mpi_op_sum", &mpi.operations[USI_MPI_SUM]},
        {"ompi_mpi_op_max", &mpi.operations[USI_MPI_MAX]},
        {"MPI_Init_thread", (void **)&mpi.init_thread},
        {"MPI_Finalized", (void **)&mpi.finalized},
        {"MPI_Comm_rank", (void **)&mpi.comm_rank},
        {"MPI_Comm_size", (void **)&mpi.comm_size},
        {"MPI_Allreduce", (void **)&mpi.allreduce},
        {"MPI_Iallreduce", (void **)&mpi.iallreduce},
        {"MPI_Wait", (void **)&mpi.wait},
        {"MPI_Test", (void **)&mpi.test},
        {"MPI_Barrier", (void **)&mpi.barrier},
        {"MPI_Bcast", (void **)&mpi.bcast},
        {"MPI_Abort", (void **)&mpi.abort_},
        {"MPI_Finalize", (void **)&mpi.finalize},
        {"MPI_Comm_set_errhandler", (void **)&mpi.set_errhandler},
        {"MPI_Error_string", (void **)&mpi.error_string},
    };
    for (size_t i = 0; i < sizeof symbols / sizeof symbols[0]; i++) {
        if (resolve(symbols[i].name, symbols[i].slot, error, error_capacity) != 0) {
            dlclose(mpi.library);
            memset(&mpi, 0, sizeof mpi);
            return -1;
        }
    }
    mpi.loaded = 1;
    return 0;
}

int usi_mpi_is_loaded(void) { return mpi.loaded; }

int usi_mpi_init(int required_thread_level, int *provided) {
    if (!mpi.loaded) return USI_MPI_NOT_LOADED;
    int code = mpi.init_thread(NULL, NULL, required_thread_level, provided);
    if (code != 0) return code;
    return mpi.set_errhandler(mpi.comm_world, mpi.errors_return);
}

int usi_mpi_is_finalized(void) {
    int flag = 0;
    if (mpi.loaded) mpi.finalized(&flag);
    return flag;
}

int usi_mpi_rank(int *rank) { return mpi.loaded ? mpi.comm_rank(mpi.comm_world, rank) : USI_MPI_NOT_LOADED; }
int usi_mpi_size(int *size) { return mpi.loaded ? mpi.comm_size(mpi.comm_world, size) : USI_MPI_NOT_LOADED; }

int usi_mpi_allreduce(void *buffer, size_t count, usi_mpi_type type, usi_mpi_operation operation) {
    if (!mpi.loaded) return USI_MPI_NOT_LOADED;
    char *bytes = buffer;
    // MPI counts are int: reduce in chunks of at most INT_MAX elements (element-wise, so the
    // chunks' results are the whole buffer's).
    while (count > 0) {
        int n = count > (size_t)INT_MAX ? INT_MAX : (int)count;
        int code = mpi.allreduce(MPI_IN_PLACE_ADDRESS, bytes, n, mpi.types[type], mpi.operations[operation],
                                 mpi.comm_world);
        if (code != 0) return code;
        bytes += (size_t)n * element_bytes[type];
        count -= (size_t)n;
    }
    return 0;
}

int usi_mpi_iallreduce(void *buffer, size_t count, usi_mpi_type type, usi_mpi_operation operation,
                       usi_mpi_request *request) {
    if (!mpi.loaded) return USI_MPI_NOT_LOADED;
    if (count > (size_t)INT_MAX) return USI_MPI_TOO_LARGE;
    return mpi.iallreduce(MPI_IN_PLACE_ADDRESS, buffer, (int)count, mpi.types[type], mpi.operations[operation],
                          mpi.comm_world, (void **)request);
}

int usi_mpi_wait(usi_mpi_request *request) {
    return mpi.loaded ? mpi.wait((void **)request, MPI_STATUS_IGNORE_ADDRESS) : USI_MPI_NOT_LOADED;
}

int usi_mpi_test(usi_mpi_request *request, int *done) {
    return mpi.loaded ? mpi.test((void **)request, done, MPI_STATUS_IGNORE_ADDRESS) : USI_MPI_NOT_LOADED;
}

int usi_mpi_barrier(void) { return mpi.loaded ? mpi.barrier(mpi.comm_world) : USI_MPI_NOT_LOADED; }

int usi_mpi_broadcast(void *buffer, size_t count, usi_mpi_type type, int root) {
    if (!mpi.loaded) return USI_MPI_NOT_LOADED;
    char *bytes = buffer;
    while (count > 0) {
        int n = count > (size_t)INT_MAX ? INT_MAX : (int)count;
        int code = mpi.bcast(bytes, n, mpi.types[type], root, mpi.comm_world);
        if (code != 0) return code;
        bytes += (size_t)n * element_bytes[type];
        count -= (size_t)n;
    }
    return 0;
}

int usi_mpi_abort(int code) { return mpi.loaded ? mpi.abort_(mpi.comm_world, code) : USI_MPI_NOT_LOADED; }

int usi_mpi_finalize(void) { return mpi.loaded ? mpi.finalize() : USI_MPI_NOT_LOADED; }

void usi_mpi_error_string(int code, char *text, size_t capacity) {
    if (capacity == 0) return;
    if (code == USI_MPI_NOT_LOADED) {
        snprintf(text, capacity, "the MPI library is not loaded");
    } else if (code == USI_MPI_TOO_LARGE) {
        snprintf(text, capacity, "more than INT_MAX elements in one non-blocking call");
    } else if (mpi.loaded) {
        char buffer[MPI_ERROR_TEXT_CAPACITY];
        int length = 0;
        if (mpi.error_string(code, buffer, &length) == 0) {
            snprintf(text, capacity, "%.*s (MPI error %d)", length, buffer, code);
        } else {
            snprintf(text, capacity, "MPI error %d", code);
        }
    } else {
        snprintf(text, capacity, "MPI error %d", code);
    }
}
