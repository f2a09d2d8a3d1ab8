{
  "targets": [
    {
      "target_name": "dhtfs_copy",
      "sources": ["copy.c"],
      "cflags": ["-O2", "-Wall"]
    }
  ]
}
