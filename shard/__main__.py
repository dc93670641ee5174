from spotmatch.cli import main

raise SystemExit(main(["shard", *__import__("sys").argv[1:]]))
