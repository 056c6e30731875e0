//! libtorch's C++ errors end with "Exception raised from … (most recent call first):" and a dozen `frame #N:` lines:
//! noise to a user whose file was wrong. Errors are shown without them; `-vv` keeps them.

/// `text` without libtorch's C++ backtrace lines, unless trace logging (`-vv`) is on.
pub fn without_backtrace(text: &str) -> String {
    if tracing::enabled!(tracing::Level::TRACE) {
        return text.to_string();
    }
    let frame = |l: &str| {
        let l = l.trim_start();
        l.starts_with("Exception raised from ")
            || (l.starts_with("frame #") && l[7..].starts_with(|c: char| c.is_ascii_digit()))
    };
    let kept: Vec<&str> = text.lines().filter(|l| !frame(l)).collect();
    kept.join("\n").trim_end().to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn cxx_frames_are_dropped() {
        let text = "loading m.pt: open file failed because of errno 21 on fopen: Is a directory, file path: m.pt\n\
                    Exception raised from RAIIFile at /pytorch/caffe2/serialize/file_adapter.cc:31 (most recent call first):\n\
                    frame #0: c10::Error::Error(c10::SourceLocation, std::string) + 0x9d (0x7f in libc10.so)\n\
                    frame #1: <unknown function> + 0x5fd (0x7f in libtorch_cpu.so)\n";
        assert_eq!(
            super::without_backtrace(text),
            "loading m.pt: open file failed because of errno 21 on fopen: Is a directory, file path: m.pt"
        );
    }
}
