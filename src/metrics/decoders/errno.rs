//! `errno`: a negative return value (`-ENOENT`, the kernel's and many
//! libraries' way to fail) as the error's name.

use super::{read_signed, DecodeError, Decoder, INT_SIZE_REASON};

/// Linux's error numbers and their names (generic and x86/arm values; the
/// `libc` crate gives each one for the target).
const NAMES: &[(i32, &str)] = &[
    (libc::EPERM, "EPERM"),
    (libc::ENOENT, "ENOENT"),
    (libc::ESRCH, "ESRCH"),
    (libc::EINTR, "EINTR"),
    (libc::EIO, "EIO"),
    (libc::ENXIO, "ENXIO"),
    (libc::E2BIG, "E2BIG"),
    (libc::ENOEXEC, "ENOEXEC"),
    (libc::EBADF, "EBADF"),
    (libc::ECHILD, "ECHILD"),
    (libc::EAGAIN, "EAGAIN"),
    (libc::ENOMEM, "ENOMEM"),
    (libc::EACCES, "EACCES"),
    (libc::EFAULT, "EFAULT"),
    (libc::ENOTBLK, "ENOTBLK"),
    (libc::EBUSY, "EBUSY"),
    (libc::EEXIST, "EEXIST"),
    (libc::EXDEV, "EXDEV"),
    (libc::ENODEV, "ENODEV"),
    (libc::ENOTDIR, "ENOTDIR"),
    (libc::EISDIR, "EISDIR"),
    (libc::EINVAL, "EINVAL"),
    (libc::ENFILE, "ENFILE"),
    (libc::EMFILE, "EMFILE"),
    (libc::ENOTTY, "ENOTTY"),
    (libc::ETXTBSY, "ETXTBSY"),
    (libc::EFBIG, "EFBIG"),
    (libc::ENOSPC, "ENOSPC"),
    (libc::ESPIPE, "ESPIPE"),
    (libc::EROFS, "EROFS"),
    (libc::EMLINK, "EMLINK"),
    (libc::EPIPE, "EPIPE"),
    (libc::EDOM, "EDOM"),
    (libc::ERANGE, "ERANGE"),
    (libc::EDEADLK, "EDEADLK"),
    (libc::ENAMETOOLONG, "ENAMETOOLONG"),
    (libc::ENOLCK, "ENOLCK"),
    (libc::ENOSYS, "ENOSYS"),
    (libc::ENOTEMPTY, "ENOTEMPTY"),
    (libc::ELOOP, "ELOOP"),
    (libc::ENOMSG, "ENOMSG"),
    (libc::EIDRM, "EIDRM"),
    (libc::ENOSTR, "ENOSTR"),
    (libc::ENODATA, "ENODATA"),
    (libc::ETIME, "ETIME"),
    (libc::ENOSR, "ENOSR"),
    (libc::ENOLINK, "ENOLINK"),
    (libc::EPROTO, "EPROTO"),
    (libc::EBADMSG, "EBADMSG"),
    (libc::EOVERFLOW, "EOVERFLOW"),
    (libc::EILSEQ, "EILSEQ"),
    (libc::EUSERS, "EUSERS"),
    (libc::ENOTSOCK, "ENOTSOCK"),
    (libc::EDESTADDRREQ, "EDESTADDRREQ"),
    (libc::EMSGSIZE, "EMSGSIZE"),
    (libc::EPROTOTYPE, "EPROTOTYPE"),
    (libc::ENOPROTOOPT, "ENOPROTOOPT"),
    (libc::EPROTONOSUPPORT, "EPROTONOSUPPORT"),
    (libc::ESOCKTNOSUPPORT, "ESOCKTNOSUPPORT"),
    (libc::EOPNOTSUPP, "EOPNOTSUPP"),
    (libc::EPFNOSUPPORT, "EPFNOSUPPORT"),
    (libc::EAFNOSUPPORT, "EAFNOSUPPORT"),
    (libc::EADDRINUSE, "EADDRINUSE"),
    (libc::EADDRNOTAVAIL, "EADDRNOTAVAIL"),
    (libc::ENETDOWN, "ENETDOWN"),
    (libc::ENETUNREACH, "ENETUNREACH"),
    (libc::ENETRESET, "ENETRESET"),
    (libc::ECONNABORTED, "ECONNABORTED"),
    (libc::ECONNRESET, "ECONNRESET"),
    (libc::ENOBUFS, "ENOBUFS"),
    (libc::EISCONN, "EISCONN"),
    (libc::ENOTCONN, "ENOTCONN"),
    (libc::ESHUTDOWN, "ESHUTDOWN"),
    (libc::ETOOMANYREFS, "ETOOMANYREFS"),
    (libc::ETIMEDOUT, "ETIMEDOUT"),
    (libc::ECONNREFUSED, "ECONNREFUSED"),
    (libc::EHOSTDOWN, "EHOSTDOWN"),
    (libc::EHOSTUNREACH, "EHOSTUNREACH"),
    (libc::EALREADY, "EALREADY"),
    (libc::EINPROGRESS, "EINPROGRESS"),
    (libc::ESTALE, "ESTALE"),
    (libc::EDQUOT, "EDQUOT"),
    (libc::ECANCELED, "ECANCELED"),
    (libc::EOWNERDEAD, "EOWNERDEAD"),
    (libc::ENOTRECOVERABLE, "ENOTRECOVERABLE"),
    (libc::ERFKILL, "ERFKILL"),
    (libc::EHWPOISON, "EHWPOISON"),
];

/// The name of error number `errno` (positive), if Linux has one.
pub fn name(errno: i64) -> Option<&'static str> {
    NAMES
        .iter()
        .find(|(n, _)| i64::from(*n) == errno)
        .map(|(_, name)| *name)
}

/// Decodes a 1, 2, 4 or 8-byte signed integer: a negative known error number
/// as its name (`-2` as `ENOENT`); zero, positive values and unknown negative
/// ones as decimal, so success and byte counts stay readable.
#[derive(Debug, Clone, Copy, Default)]
pub struct ErrnoDecoder;

impl Decoder for ErrnoDecoder {
    fn decode(&self, input: &[u8]) -> Result<Option<Vec<u8>>, DecodeError> {
        let value = read_signed(input)
            .ok_or_else(|| DecodeError::bad_input("errno", input, INT_SIZE_REASON))?;
        let text = match value.checked_neg().and_then(name) {
            Some(name) if value < 0 => name.to_string(),
            _ => value.to_string(),
        };
        Ok(Some(text.into_bytes()))
    }

    fn is_injective(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(input: &[u8]) -> String {
        String::from_utf8(ErrnoDecoder.decode(input).unwrap().unwrap()).unwrap()
    }

    #[test]
    fn negative_error_numbers_are_named() {
        assert_eq!(decode(&(-2i64).to_ne_bytes()), "ENOENT");
        assert_eq!(decode(&(-13i32).to_ne_bytes()), "EACCES");
        assert_eq!(decode(&(-111i64).to_ne_bytes()), "ECONNREFUSED");
        assert_eq!(decode(&[(-4i8) as u8]), "EINTR");
        assert_eq!(decode(&(-11i16).to_ne_bytes()), "EAGAIN");
    }

    #[test]
    fn other_values_stay_numbers() {
        assert_eq!(decode(&0i64.to_ne_bytes()), "0");
        assert_eq!(decode(&2i64.to_ne_bytes()), "2");
        assert_eq!(decode(&4096i32.to_ne_bytes()), "4096");
        assert_eq!(decode(&(-9999i64).to_ne_bytes()), "-9999");
        assert_eq!(decode(&i64::MIN.to_ne_bytes()), i64::MIN.to_string());
        assert!(ErrnoDecoder.decode(&[1, 2, 3]).is_err());
    }

    #[test]
    fn every_name_is_unique_and_matches_strerror() {
        let mut numbers: Vec<i32> = NAMES.iter().map(|(n, _)| *n).collect();
        numbers.sort_unstable();
        numbers.dedup();
        assert_eq!(numbers.len(), NAMES.len());
        // Spot checks against the C library's own table.
        for (errno, name) in [(libc::ENOENT, "ENOENT"), (libc::EPIPE, "EPIPE")] {
            assert_eq!(self::name(i64::from(errno)), Some(name));
        }
    }
}
