/* The errno values BPF code and usdt.bpf.h use, without the host's headers. */
#ifndef __BCC_STUB_ERRNO_H
#define __BCC_STUB_ERRNO_H
#define EPERM 1
#define ENOENT 2
#define ESRCH 3
#define EINTR 4
#define EIO 5
#define E2BIG 7
#define EBADF 9
#define EAGAIN 11
#define ENOMEM 12
#define EACCES 13
#define EFAULT 14
#define EBUSY 16
#define EEXIST 17
#define EINVAL 22
#define ENOSPC 28
#define ERANGE 34
#define ENOSYS 38
#define ENOTSUP 95
#define EOPNOTSUPP 95
#endif
