// OpenBLAS (CBLAS) and the LAPACK routines compressor calls. Debian ships no lapacke.h,
// so the Fortran entry points are declared here by hand (column-major, all by pointer,
// hidden string-length arguments omitted: every character argument is one byte).
// Only Sources/Linalg imports this module.
#ifndef COMPRESSOR_COPENBLAS_SHIM_H
#define COMPRESSOR_COPENBLAS_SHIM_H
#include <cblas.h>

// A spin-wait hint for the worker pool's busy loops (x86 `pause`, Arm `yield`): the waiting core
// draws less power and leaves its execution units to a sibling hyperthread.
static inline void compressor_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield");
#endif
}

// Singular value decomposition by divide and conquer.
void sgesdd_(const char *jobz, const int *m, const int *n, float *a, const int *lda,
             float *s, float *u, const int *ldu, float *vt, const int *ldvt,
             float *work, const int *lwork, int *iwork, int *info);
void dgesdd_(const char *jobz, const int *m, const int *n, double *a, const int *lda,
             double *s, double *u, const int *ldu, double *vt, const int *ldvt,
             double *work, const int *lwork, int *iwork, int *info);
// Cholesky factorization of a symmetric positive definite matrix.
void spotrf_(const char *uplo, const int *n, float *a, const int *lda, int *info);
void dpotrf_(const char *uplo, const int *n, double *a, const int *lda, int *info);
// The inverse of a symmetric positive definite matrix from its Cholesky factor.
void dpotri_(const char *uplo, const int *n, double *a, const int *lda, int *info);
// Eigen decomposition of a symmetric matrix by divide and conquer.
void dsyevd_(const char *jobz, const char *uplo, const int *n, double *a, const int *lda,
             double *w, double *work, const int *lwork, int *iwork, const int *liwork, int *info);

#endif
