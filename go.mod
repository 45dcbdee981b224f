module github.com/les-streams/les

go 1.26
