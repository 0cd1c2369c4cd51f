/* Loaded into Orthanc 1.13 (the benchmark's newest peer, run from a Debian sid chroot):
 *  - bind(): an IPv4 or IPv6 wildcard address becomes loopback, so every port Orthanc opens
 *    (its DICOM port has no bind-address option) listens on 127.0.0.1 / ::1 only;
 *  - pthread_attr_setstacksize(): at least 8 MiB, since Debian's civetweb gives its HTTP
 *    threads 100 KB and GDCM's JPEG 2000 decoder overflows that (a segfault on the first
 *    J2K transcode or rendering).
 * Written for this benchmark; built by benchmarks/orthanc_sid.py with the machine's gcc. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netinet/in.h>
#include <pthread.h>
#include <string.h>
#include <sys/socket.h>

typedef int (*bind_fn)(int, const struct sockaddr *, socklen_t);
typedef int (*stacksize_fn)(pthread_attr_t *, size_t);

int bind(int fd, const struct sockaddr *addr, socklen_t len) {
    static bind_fn real = 0;
    if (!real) real = (bind_fn)dlsym(RTLD_NEXT, "bind");
    if (addr && addr->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
        struct sockaddr_in copy;
        memcpy(&copy, addr, sizeof copy);
        if (copy.sin_addr.s_addr == htonl(INADDR_ANY)) {
            copy.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            return real(fd, (const struct sockaddr *)&copy, sizeof copy);
        }
    }
    if (addr && addr->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        struct sockaddr_in6 copy;
        memcpy(&copy, addr, sizeof copy);
        if (memcmp(&copy.sin6_addr, &in6addr_any, sizeof in6addr_any) == 0) {
            copy.sin6_addr = in6addr_loopback;
            return real(fd, (const struct sockaddr *)&copy, sizeof copy);
        }
    }
    return real(fd, addr, len);
}

int pthread_attr_setstacksize(pthread_attr_t *attr, size_t size) {
    static stacksize_fn real = 0;
    if (!real) real = (stacksize_fn)dlsym(RTLD_NEXT, "pthread_attr_setstacksize");
    const size_t least = 8u << 20;
    return real(attr, size < least ? least : size);
}
