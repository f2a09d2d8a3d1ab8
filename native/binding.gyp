{
  "targets": [
    {
      "target_name": "dhtfs_fuse",
      "sources": ["fuse.c"],
      "cflags": ["-O2", "-Wall", "<!@(pkg-config --cflags fuse3)"],
      "libraries": ["<!@(pkg-config --libs fuse3)", "-lpthread"]
    }
  ]
}
