"""Files: sessions, mask formats and safe, atomic writing."""
