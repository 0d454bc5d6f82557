//! A file's bytes as the parsers see them, read rather than mapped.
//!
//! A mapped file faults its reader (SIGBUS) when another process truncates
//! it during the parse, and in a node-wide deployment a tenant may do that to
//! its own library. Reading the whole file instead would cost its size in
//! memory (binaries of 200 MB exist, and a DaemonSet has a memory limit), so
//! an [`Image`] is a zeroed anonymous mapping of the file's length, filled
//! with `pread` only where the parsers look: the ELF header, the program and
//! section header tables, the section names, the symbol, string, version and
//! dynamic tables and the `.note.stapsdt` notes. Untouched pages of an
//! anonymous mapping cost no memory. A read that comes short (the file was
//! truncated meanwhile) is an error, never zeros taken for data.
//!
//! Why not a zeroed `Vec`: glibc serves a large `calloc` from the heap once
//! its mmap threshold has grown (it grows to the largest chunk freed, up to
//! 32 MiB) and then clears it with `memset`, touching every page: the third
//! 24 MB `vec![0; n]` in a row added 24 MB of RSS here.

use super::{gopclntab, ElfError};
use object::elf;
use object::read::elf::{FileHeader, SectionHeader};
use object::Endianness;
use std::fs::File;
use std::io;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::ptr::NonNull;

/// The most bytes read from one file. The tables of real files are far
/// smaller (about 27 MB in the 150 MB `librustc_driver.so`, 4 MB in
/// `libjvm.so`); a hostile sparse file could declare gigabytes.
pub(super) const MAX_READ_BYTES: u64 = 256 << 20;

/// A zeroed image of a file, with the ranges the parsers use read in.
pub(super) struct Image {
    ptr: NonNull<u8>,
    len: usize,
}

impl Image {
    /// Reads what the parsers of an ELF file use from `file` (`len` bytes
    /// long when it was opened). A file that is not ELF gets its first bytes
    /// only: enough for the parsers to say so.
    pub(super) fn read(path: &Path, file: &File, len: u64) -> Result<Image, ElfError> {
        let size = usize::try_from(len).map_err(|_| {
            ElfError::io(
                path,
                io::Error::new(io::ErrorKind::OutOfMemory, "larger than the address space"),
            )
        })?;
        let mut image = Image::zeroed(size).map_err(|e| ElfError::io(path, e))?;
        let mut reader = Reader {
            path,
            file,
            image: &mut image,
            read: 0,
        };
        // e_ident: the magic number, class, byte order and version.
        reader.fill(std::iter::once(0..16))?;
        match reader.image.bytes() {
            [0x7f, b'E', b'L', b'F', elf::ELFCLASS32, ..] => {
                reader.tables::<elf::FileHeader32<Endianness>>()?
            }
            [0x7f, b'E', b'L', b'F', elf::ELFCLASS64, ..] => {
                reader.tables::<elf::FileHeader64<Endianness>>()?
            }
            _ => {}
        }
        Ok(image)
    }

    /// `len` zero bytes that cost memory only once written.
    fn zeroed(len: usize) -> io::Result<Image> {
        if len == 0 {
            return Ok(Image {
                ptr: NonNull::dangling(),
                len,
            });
        }
        // SAFETY: a fresh private anonymous mapping; the result is checked
        // before use and unmapped on drop.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap gave 0"))?;
        Ok(Image { ptr, len })
    }

    /// The image: the file's length, zero where nothing was read.
    pub(super) fn bytes(&self) -> &[u8] {
        // SAFETY: `len` readable bytes that live as long as `self`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: `len` writable bytes, borrowed mutably through `self`.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        if self.len > 0 {
            // SAFETY: unmapping exactly the mapping made in `zeroed`.
            unsafe {
                libc::munmap(self.ptr.as_ptr().cast(), self.len);
            }
        }
    }
}

/// Fills an image stage by stage: each stage finds its ranges in what the
/// stages before it read.
struct Reader<'a> {
    path: &'a Path,
    file: &'a File,
    image: &'a mut Image,
    /// Bytes read so far, against [`MAX_READ_BYTES`].
    read: u64,
}

impl Reader<'_> {
    /// Reads `ranges` (clipped to the file as it was opened) into the image.
    fn fill(&mut self, ranges: impl IntoIterator<Item = Range<u64>>) -> Result<(), ElfError> {
        let len = self.image.len as u64;
        let mut ranges: Vec<Range<u64>> = ranges
            .into_iter()
            .map(|r| r.start.min(len)..r.end.min(len))
            .filter(|r| !r.is_empty())
            .collect();
        ranges.sort_by_key(|r| r.start);
        let mut merged: Vec<Range<u64>> = Vec::with_capacity(ranges.len());
        for range in ranges {
            match merged.last_mut() {
                Some(last) if range.start <= last.end => last.end = last.end.max(range.end),
                _ => merged.push(range),
            }
        }
        let total: u64 = merged.iter().map(|r| r.end - r.start).sum();
        self.read = self.read.saturating_add(total);
        if self.read > MAX_READ_BYTES {
            return Err(ElfError::TooLarge {
                path: self.path.to_path_buf(),
                bytes: self.read,
                limit: MAX_READ_BYTES,
            });
        }
        for range in merged {
            // Clipped to the image's length above, so these fit in usize.
            let buf = &mut self.image.bytes_mut()[range.start as usize..range.end as usize];
            read_exact_at(self.file, buf, range.start).map_err(|e| match e {
                Short::At(at) => ElfError::Changed {
                    path: self.path.to_path_buf(),
                    reason: format!(
                        "it was {len} bytes long when opened, and reading at byte {at} found its end: it was truncated"
                    ),
                },
                Short::Io(e) => ElfError::io(self.path, e),
            })?;
        }
        Ok(())
    }

    /// Reads the header, the header tables, the section names and the
    /// sections the parsers read. Anything broken is left for the parsers to
    /// report: this only decides what to read.
    fn tables<Elf: FileHeader<Endian = Endianness>>(&mut self) -> Result<(), ElfError> {
        let header_size = size_of::<Elf>() as u64;
        let section_size = size_of::<Elf::SectionHeader>() as u64;
        let program_size = size_of::<Elf::ProgramHeader>() as u64;
        self.fill(std::iter::once(0..header_size))?;

        // Section 0 holds the section and program header counts when they
        // do not fit the header's fields.
        let Some((endian, shoff, phoff)) = header::<Elf>(self.image.bytes())
            .map(|(h, e)| (e, h.e_shoff(e).into(), h.e_phoff(e).into()))
        else {
            return Ok(());
        };
        if shoff != 0 {
            self.fill(std::iter::once(span(shoff, section_size, 1)))?;
        }
        let tables = {
            let data = self.image.bytes();
            let Some((header, _)) = header::<Elf>(data) else {
                return Ok(());
            };
            let shnum = header.shnum(endian, data).unwrap_or(0) as u64;
            let phnum = header.phnum(endian, data).unwrap_or(0) as u64;
            [
                span(shoff, section_size, shnum),
                span(phoff, program_size, phnum),
            ]
        };
        self.fill(tables)?;

        // The section names, to find the notes by name.
        let names = {
            let data = self.image.bytes();
            let shstrndx = header::<Elf>(data).and_then(|(h, _)| h.shstrndx(endian, data).ok());
            let sections =
                header::<Elf>(data).and_then(|(h, _)| h.section_headers(endian, data).ok());
            match (shstrndx, sections) {
                (Some(index), Some(sections)) => sections
                    .get(index as usize)
                    .and_then(|s| section_range(s, endian)),
                _ => None,
            }
        };
        self.fill(names)?;

        let wanted = {
            let data = self.image.bytes();
            let Some((header, _)) = header::<Elf>(data) else {
                return Ok(());
            };
            let Ok(sections) = header.sections(endian, data) else {
                return Ok(());
            };
            wanted_sections(&sections, endian)
        };
        self.fill(wanted)
    }
}

/// The file header, if the image has one.
fn header<Elf: FileHeader<Endian = Endianness>>(data: &[u8]) -> Option<(&Elf, Endianness)> {
    let header = Elf::parse(data).ok()?;
    Some((header, header.endian().ok()?))
}

/// `count` entries of `size` bytes from `offset`, saturating: an impossible
/// table is clipped to the file and reported by the parsers.
fn span(offset: u64, size: u64, count: u64) -> Range<u64> {
    offset..offset.saturating_add(size.saturating_mul(count))
}

/// The bytes of a section in the file (none for `SHT_NOBITS`).
fn section_range<S: SectionHeader<Endian = Endianness>>(
    section: &S,
    endian: Endianness,
) -> Option<Range<u64>> {
    let (offset, size) = section.file_range(endian)?;
    Some(offset..offset.saturating_add(size))
}

/// The sections the parsers read: the symbol, version and dynamic tables,
/// the `.note.stapsdt` notes, in a Go binary the sections its function table
/// reader looks into, and every section these link to (their string tables,
/// and the symbol table of a version table), transitively.
fn wanted_sections<Elf: FileHeader<Endian = Endianness>>(
    sections: &object::read::elf::SectionTable<'_, Elf>,
    endian: Endianness,
) -> Vec<Range<u64>> {
    let headers = sections.iter().as_slice();
    let name = |section| sections.section_name(endian, section).ok();
    let go = headers
        .iter()
        .any(|s| name(s).is_some_and(gopclntab::marks_go));
    let mut taken = vec![false; headers.len()];
    let mut pending: Vec<usize> = Vec::new();
    for (index, section) in headers.iter().enumerate() {
        if go && name(section).is_some_and(gopclntab::wanted_section) {
            pending.push(index);
            continue;
        }
        let wanted = match section.sh_type(endian) {
            elf::SHT_SYMTAB
            | elf::SHT_DYNSYM
            | elf::SHT_SYMTAB_SHNDX
            | elf::SHT_DYNAMIC
            | elf::SHT_GNU_VERSYM
            | elf::SHT_GNU_VERDEF
            | elf::SHT_GNU_VERNEED => true,
            elf::SHT_NOTE => sections
                .section_name(endian, section)
                .is_ok_and(|name| name == b".note.stapsdt"),
            _ => false,
        };
        if wanted {
            pending.push(index);
        }
    }
    let mut ranges = Vec::new();
    while let Some(index) = pending.pop() {
        // Section 0 is no section: a link to it is no link.
        if index == 0 || std::mem::replace(&mut taken[index], true) {
            continue;
        }
        let section = &headers[index];
        ranges.extend(section_range(section, endian));
        let link = section.sh_link(endian) as usize;
        if link < headers.len() {
            pending.push(link);
        }
    }
    ranges
}

/// Why a read came short.
enum Short {
    /// The file ended at this offset.
    At(u64),
    /// Another error.
    Io(io::Error),
}

/// Fills `buf` from `offset`, or says where the file ended.
fn read_exact_at(file: &File, mut buf: &mut [u8], mut offset: u64) -> Result<(), Short> {
    while !buf.is_empty() {
        match file.read_at(buf, offset) {
            Ok(0) => return Err(Short::At(offset)),
            Ok(n) => {
                buf = &mut buf[n..];
                offset += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Short::Io(e)),
        }
    }
    Ok(())
}
