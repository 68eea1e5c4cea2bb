"""{{name}}: the network word count of the Spark Streaming guide, in Python."""


def define(ssc, args):
    lines = ssc.socketTextStream(args["host"], args.int("port"))
    words = lines.flatMap(lambda line: line.split(" "))
    counts = words.map(lambda word: (word, 1)).reduceByKey(lambda a, b: a + b)
    counts.pprint()
