/* Provided by vmlinux.h: bcc programs include this out of habit. */
#include "vmlinux.h"
#ifndef KERNEL_VERSION
#define KERNEL_VERSION(a, b, c) (((a) << 16) + ((b) << 8) + ((c) > 255 ? 255 : (c)))
#endif
