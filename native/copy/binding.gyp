{
  "targets": [
    {
      "target_name": "dhtfs_copy",
      "sources": ["copy.c", "at.c"],
      "cflags": ["-O2", "-Wall"],
      "libraries": ["-lpthread"]
    }
  ]
}
