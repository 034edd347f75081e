// usi_mpi: Open MPI reached through dlopen/dlsym at run time, so that nothing in the build
// needs mpi.h or libmpi. Only the few calls data-parallel training needs are exposed; every
// handle is an opaque pointer and every element type and operation a small enum.
//
// The ABI is Open MPI's (libmpi.so.40, Open MPI 3.x–5.x): MPI_Comm, MPI_Datatype, MPI_Op,
// MPI_Request and MPI_Errhandler are pointers; the predefined handles (MPI_COMM_WORLD,
// MPI_FLOAT, MPI_SUM, …) are the addresses of the global objects `ompi_mpi_comm_world`,
// `ompi_mpi_float`, `ompi_mpi_op_sum`, …; MPI_IN_PLACE is (void *)1 and MPI_STATUS_IGNORE is
// NULL. MPICH's ABI (integer handles) is different and is not supported.
#ifndef USI_MPI_H
#define USI_MPI_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Element types of a reduction or broadcast.
typedef enum {
    USI_MPI_FLOAT = 0,
    USI_MPI_DOUBLE = 1,
    USI_MPI_INT64 = 2,
    USI_MPI_BYTE = 3,
} usi_mpi_type;

/// Reduction operations.
typedef enum {
    USI_MPI_SUM = 0,
    USI_MPI_MAX = 1,
} usi_mpi_operation;

/// An outstanding non-blocking operation (an MPI_Request).
typedef struct usi_mpi_request_opaque *usi_mpi_request;

/// Return codes of the shim itself (MPI's own codes are >= 0; 0 is success).
#define USI_MPI_NOT_LOADED (-1)
#define USI_MPI_TOO_LARGE (-2)

/// Opens `library` (e.g. "libmpi.so.40") and resolves every symbol the shim uses. Returns 0,
/// or -1 with a message in `error` (dlerror's text, or the missing symbol's name). Idempotent.
int usi_mpi_load(const char *library, char *error, size_t error_capacity);

/// 1 when usi_mpi_load succeeded.
int usi_mpi_is_loaded(void);

/// MPI_Init_thread, then MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN) so that
/// failures come back as codes instead of aborting inside MPI. `provided` receives the thread
/// level MPI granted (0 single, 1 funneled, 2 serialized, 3 multiple).
int usi_mpi_init(int required_thread_level, int *provided);

/// MPI_Finalized's flag (1 after MPI_Finalize).
int usi_mpi_is_finalized(void);

int usi_mpi_rank(int *rank);
int usi_mpi_size(int *size);

/// In-place all-reduce of `count` elements of MPI_COMM_WORLD. Counts beyond INT_MAX are
/// split into several calls.
int usi_mpi_allreduce(void *buffer, size_t count, usi_mpi_type type, usi_mpi_operation operation);

/// Starts an in-place non-blocking all-reduce (MPI_Iallreduce); `count` must fit an int
/// (USI_MPI_TOO_LARGE otherwise: split into buckets). The buffer must stay untouched until the
/// request completes.
int usi_mpi_iallreduce(void *buffer, size_t count, usi_mpi_type type, usi_mpi_operation operation,
                       usi_mpi_request *request);

/// MPI_Wait on `request` (set to the null request after).
int usi_mpi_wait(usi_mpi_request *request);

/// MPI_Test on `request`: `done` is 1 when it completed.
int usi_mpi_test(usi_mpi_request *request, int *done);

int usi_mpi_barrier(void);

/// MPI_Bcast of `count` elements from `root` (split beyond INT_MAX).
int usi_mpi_broadcast(void *buffer, size_t count, usi_mpi_type type, int root);

/// MPI_Abort(MPI_COMM_WORLD, code): ends every rank of the job.
int usi_mpi_abort(int code);

int usi_mpi_finalize(void);

/// MPI_Error_string of an MPI code (or the shim's own), into `text` (NUL-terminated).
void usi_mpi_error_string(int code, char *text, size_t capacity);

#ifdef __cplusplus
}
#endif

#endif
