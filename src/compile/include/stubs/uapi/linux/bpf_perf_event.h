/* Provided by vmlinux.h: bcc programs include this out of habit. */
#include "vmlinux.h"
